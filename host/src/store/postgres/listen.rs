//! Hearing what other nodes change: a thread holds one connection that `LISTEN`s on
//! [`CHANGES_CHANNEL`](super::CHANGES_CHANNEL) and wakes the node's reconciler on each
//! notification. A dropped connection is opened again (after a pause that grows to a few
//! seconds), and the reconciler is woken then too, since notifications sent meanwhile are lost;
//! the server also reconciles on a timer, so even a missed notification heals.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use tokio::sync::Notify;

use super::CHANGES_CHANNEL;

/// The longest pause between attempts to connect again.
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// How often the thread looks up from waiting, to notice that it should stop.
const POLL: Duration = Duration::from_millis(500);

/// Wakes whoever waits on [`ChangeListener::changed`] when another node changes something.
/// Dropping it stops the thread (within half a second).
#[derive(Debug)]
pub struct ChangeListener {
    wake: Arc<Notify>,
    stop: Arc<AtomicBool>,
}

impl ChangeListener {
    /// Resolves at the next change (at once if one came since the last call).
    pub async fn changed(&self) {
        self.wake.notified().await;
    }
}

impl Drop for ChangeListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Starts listening for other nodes' changes.
///
/// # Errors
/// The thread cannot be started.
pub fn listen(config: postgres::Config) -> std::io::Result<ChangeListener> {
    let wake = Arc::new(Notify::new());
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (wake, stop) = (wake.clone(), stop.clone());
        std::thread::Builder::new()
            .name("passthru-listen".into())
            .spawn(move || run(&config, &wake, &stop))?;
    }
    Ok(ChangeListener { wake, stop })
}

fn run(config: &postgres::Config, wake: &Notify, stop: &AtomicBool) {
    let mut pause = Duration::from_millis(100);
    let mut first = true;
    while !stop.load(Ordering::Acquire) {
        match connect(config) {
            Ok(mut client) => {
                pause = Duration::from_millis(100);
                if !first {
                    // Whatever was announced while the connection was down is lost.
                    wake.notify_one();
                }
                first = false;
                if let Err(error) = wait(&mut client, wake, stop) {
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
    client.batch_execute(&format!("LISTEN {CHANGES_CHANNEL}"))?;
    Ok(client)
}

fn wait(client: &mut Client, wake: &Notify, stop: &AtomicBool) -> Result<(), postgres::Error> {
    while !stop.load(Ordering::Acquire) {
        if client.notifications().timeout_iter(POLL).next()?.is_some() {
            // One wake-up for this one and any others already here.
            let mut rest = client.notifications();
            let mut rest = rest.iter();
            while rest.next()?.is_some() {}
            wake.notify_one();
        }
        if client.is_closed() {
            return Ok(());
        }
    }
    Ok(())
}
