//! Hearing what other nodes change: a thread holds one connection that `LISTEN`s on
//! `passthru_changes` (and `passthru_versions`, `passthru_kv`) and wakes the node's reconciler on each
//! notification. A dropped connection is opened again (after a pause that grows to a few
//! seconds), and the reconciler is woken then too, since notifications sent meanwhile are lost;
//! the server also reconciles on a timer, so even a missed notification heals.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls, Notification};
use tokio::sync::Notify;

use super::kv::{Announced, KvNotice};
use super::{CHANGES_CHANNEL, KV_CHANNEL, VERSIONS_CHANNEL};

/// Key-value notices waiting for the node to apply them; past this many, they collapse into
/// one [`KvNotice::All`].
const MAX_WAITING_NOTICES: usize = 1000;

/// The longest pause between attempts to connect again.
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// How often the thread looks up from waiting, to notice that it should stop.
const POLL: Duration = Duration::from_millis(500);

/// Wakes whoever waits on [`ChangeListener::changed`] when another node changes something.
/// Dropping it stops the thread (within half a second).
#[derive(Debug)]
pub struct ChangeListener {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    wake: Notify,
    kv_wake: Notify,
    kv: Mutex<Vec<KvNotice>>,
    versions_wake: Notify,
    /// The SHA-256 of versions uploaded through other nodes, not yet compiled here.
    versions: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Shared {
    fn push_kv(&self, notice: KvNotice) {
        let mut waiting = self.kv.lock().unwrap_or_else(PoisonError::into_inner);
        if waiting.len() >= MAX_WAITING_NOTICES {
            waiting.clear();
            waiting.push(KvNotice::All);
        } else {
            waiting.push(notice);
        }
        drop(waiting);
        self.kv_wake.notify_one();
    }
}

impl ChangeListener {
    /// Resolves at the next change of flows, versions or tenants (at once if one came since
    /// the last call).
    pub async fn changed(&self) {
        self.shared.wake.notified().await;
    }

    /// The content (SHA-256) of versions uploaded through other nodes since the last call,
    /// waiting for one if there are none.
    pub async fn versions_uploaded(&self) -> Vec<String> {
        loop {
            let waiting = std::mem::take(
                &mut *self
                    .shared
                    .versions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            if !waiting.is_empty() {
                return waiting;
            }
            self.shared.versions_wake.notified().await;
        }
    }

    /// The key-value changes other nodes committed since the last call, waiting for one if
    /// there are none.
    pub async fn kv_changed(&self) -> Vec<KvNotice> {
        loop {
            let waiting = std::mem::take(
                &mut *self
                    .shared
                    .kv
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            if !waiting.is_empty() {
                return waiting;
            }
            self.shared.kv_wake.notified().await;
        }
    }
}

impl Drop for ChangeListener {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
    }
}

/// Starts listening for other nodes' changes; `origin` is this node's id, whose own key-value
/// notices are skipped.
///
/// # Errors
/// The thread cannot be started.
pub fn listen(config: postgres::Config, origin: String) -> std::io::Result<ChangeListener> {
    let shared = Arc::new(Shared::default());
    {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("passthru-listen".into())
            .spawn(move || run(&config, &origin, &shared))?;
    }
    Ok(ChangeListener { shared })
}

fn run(config: &postgres::Config, origin: &str, shared: &Shared) {
    let (wake, stop) = (&shared.wake, &shared.stop);
    let mut pause = Duration::from_millis(100);
    let mut first = true;
    while !stop.load(Ordering::Acquire) {
        match connect(config) {
            Ok(mut client) => {
                pause = Duration::from_millis(100);
                if !first {
                    // Whatever was announced while the connection was down is lost.
                    wake.notify_one();
                    shared.push_kv(KvNotice::All);
                }
                first = false;
                if let Err(error) = wait(&mut client, origin, shared) {
                    tracing::warn!(%error, "lost the connection that hears other nodes' changes");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for other nodes' changes; trying again");
                std::thread::sleep(pause);
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
}

fn connect(config: &postgres::Config) -> Result<Client, postgres::Error> {
    let mut client = config.connect(NoTls)?;
    client.batch_execute(&format!(
        "LISTEN {CHANGES_CHANNEL}; LISTEN {KV_CHANNEL}; LISTEN {VERSIONS_CHANNEL}"
    ))?;
    Ok(client)
}

fn wait(client: &mut Client, origin: &str, shared: &Shared) -> Result<(), postgres::Error> {
    while !shared.stop.load(Ordering::Acquire) {
        let first = client.notifications().timeout_iter(POLL).next()?;
        if let Some(first) = first {
            let mut changed = hear(&first, origin, shared);
            // And any others already here, with one wake-up for the lot.
            let mut rest = client.notifications();
            let mut rest = rest.iter();
            while let Some(next) = rest.next()? {
                changed |= hear(&next, origin, shared);
            }
            if changed {
                shared.wake.notify_one();
            }
        }
        if client.is_closed() {
            return Ok(());
        }
    }
    Ok(())
}

/// Takes one notification in: key-value notices (not this node's own) are queued; whether it
/// announced a change of flows, versions or tenants.
fn hear(notification: &Notification, origin: &str, shared: &Shared) -> bool {
    if notification.channel() == VERSIONS_CHANNEL {
        let mut waiting = shared
            .versions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Bounded: past it, the rest are compiled when a flow needs them.
        if waiting.len() < MAX_WAITING_NOTICES {
            waiting.push(notification.payload().to_owned());
        }
        drop(waiting);
        shared.versions_wake.notify_one();
        return false;
    }
    if notification.channel() != KV_CHANNEL {
        return true;
    }
    match serde_json::from_str::<Announced>(notification.payload()) {
        Ok(announced) if announced.from == origin => {}
        Ok(announced) => shared.push_kv(announced.notice),
        // From a newer passthru, say: reload everything rather than miss it.
        Err(_) => shared.push_kv(KvNotice::All),
    }
    false
}
