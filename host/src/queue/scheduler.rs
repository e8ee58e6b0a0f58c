//! The in-memory side of the queue: which event runs next.
//!
//! Fair between tenants: tenants with ready events take turns (round robin), and no tenant holds
//! more than `max_in_flight_per_tenant` workers at once, so one tenant's flood or slow plugin
//! leaves workers for the others. Within a tenant, events run in the order they became ready.
//! Events waiting for a retry sit in a timer heap until due. Depth is bounded: in all, and per
//! tenant, counting reservations for requests not yet committed.
//!
//! Pure bookkeeping, no I/O and no clock of its own (callers pass the time), so it is tested
//! directly.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use crate::store::queue::StoredEvent;

/// One event on its way to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: u64,
    pub tenant: Arc<str>,
    pub flow: Arc<str>,
    pub call_sid: Option<String>,
    pub query: String,
    pub accepted_at_ms: i64,
    /// Failed attempts so far: this run is attempt `attempts + 1`.
    pub attempts: u32,
    /// When this process accepted the request (not known for events resumed or replayed).
    pub accepted: Option<Instant>,
    /// Times in a row this attempt was put off for want of room in the sandbox.
    pub deferrals: u32,
}

impl From<StoredEvent> for Job {
    fn from(e: StoredEvent) -> Self {
        Self {
            id: e.id,
            tenant: e.event.tenant.into(),
            flow: e.event.flow.into(),
            call_sid: e.event.call_sid,
            query: e.event.query,
            accepted_at_ms: e.event.accepted_at_ms,
            attempts: e.attempts,
            accepted: None,
            deferrals: 0,
        }
    }
}

/// The bounds the scheduler enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub max_depth: usize,
    pub max_depth_per_tenant: usize,
    pub max_in_flight_per_tenant: usize,
}

/// Why a request could not be reserved a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The whole queue holds `max_depth` events.
    Queue { max: usize },
    /// This tenant holds `max_depth_per_tenant` events.
    Tenant { max: usize },
}

/// How a run ended, for the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Handled, or dead: the event leaves the queue.
    Gone,
    /// Failed; runs again at `due_ms`.
    Retry { due_ms: i64 },
    /// Not run (the sandbox had no room); runs again at `due_ms`, as the same attempt.
    Later { due_ms: i64 },
}

/// A flow's events in the queue right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowDepth {
    /// Due, waiting for a worker.
    pub ready: u64,
    /// Failed, or put off for want of room in the sandbox, waiting for their retry time.
    pub retrying: u64,
    /// Running on a worker.
    pub in_flight: u64,
    /// When the oldest of them was accepted.
    pub oldest_accepted_at_ms: Option<i64>,
}

#[derive(Debug, Default)]
struct TenantState {
    ready: VecDeque<Job>,
    in_flight: usize,
    /// Events held in any state, reservations included.
    depth: usize,
    in_rotation: bool,
}

#[derive(Debug, Default)]
struct FlowState {
    depth: FlowDepth,
    /// (accepted at, id) of every event of the flow: the first is the oldest.
    ages: BTreeSet<(i64, u64)>,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Delayed {
    due_ms: i64,
    id: u64,
}

#[derive(Debug)]
pub struct Scheduler {
    bounds: Bounds,
    tenants: HashMap<Arc<str>, TenantState>,
    flows: HashMap<(Arc<str>, Arc<str>), FlowState>,
    /// Tenants with ready events, in turn order.
    rotation: VecDeque<Arc<str>>,
    delayed: BinaryHeap<Reverse<Delayed>>,
    waiting: HashMap<u64, Job>,
    /// The ids of the events running on workers.
    running: HashSet<u64>,
    /// Running events another node holds now (see [`Scheduler::forget`]): they leave the queue
    /// when their run ends, however it ends.
    disowned: HashSet<u64>,
    depth: usize,
    in_flight: usize,
}

impl Scheduler {
    pub fn new(bounds: Bounds) -> Self {
        Self {
            bounds,
            tenants: HashMap::new(),
            flows: HashMap::new(),
            rotation: VecDeque::new(),
            delayed: BinaryHeap::new(),
            waiting: HashMap::new(),
            running: HashSet::new(),
            disowned: HashSet::new(),
            depth: 0,
            in_flight: 0,
        }
    }

    /// The ids of every event held: ready, waiting for a retry, or running.
    pub fn held(&self) -> Vec<u64> {
        let ready = self
            .tenants
            .values()
            .flat_map(|t| t.ready.iter().map(|j| j.id));
        ready
            .chain(self.waiting.keys().copied())
            .chain(self.running.iter().copied())
            .collect()
    }

    /// Holds again a running event let go of ([`Scheduler::forget`]) that this node claimed back:
    /// its run's end then counts as usual.
    pub fn take_back(&mut self, id: u64) {
        self.disowned.remove(&id);
    }

    /// Lets go of the events `ids`, which another node holds now (this node's lease ran out and
    /// that node claimed them): those ready or waiting for a retry leave at once, those running
    /// when their run ends. Returns how many left at once.
    pub fn forget(&mut self, ids: &HashSet<u64>) -> usize {
        let mut gone = Vec::new();
        for state in self.tenants.values_mut() {
            if state.ready.iter().any(|j| ids.contains(&j.id)) {
                let (out, kept): (VecDeque<Job>, VecDeque<Job>) =
                    state.ready.drain(..).partition(|j| ids.contains(&j.id));
                state.ready = kept;
                gone.extend(out.into_iter().map(|j| (j, true)));
            }
        }
        for id in ids {
            if let Some(job) = self.waiting.remove(id) {
                gone.push((job, false));
            }
            if self.running.contains(id) {
                self.disowned.insert(*id);
            }
        }
        let left = gone.len();
        for (job, ready) in gone {
            let flow = self.flow_mut(&job.tenant, &job.flow);
            match ready {
                true => flow.depth.ready -= 1,
                false => flow.depth.retrying -= 1,
            }
            self.leave(&job);
        }
        left
    }

    /// Events held, in all (reservations included).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// How many more events the queue may hold before its bound.
    pub fn room(&self) -> usize {
        self.bounds.max_depth.saturating_sub(self.depth)
    }

    /// Events running on workers.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Holds a place for a request of `tenant` that is about to be committed.
    ///
    /// # Errors
    /// The queue or the tenant is at its bound.
    pub fn reserve(&mut self, tenant: &str) -> Result<(), Full> {
        if self.depth >= self.bounds.max_depth {
            return Err(Full::Queue {
                max: self.bounds.max_depth,
            });
        }
        let max = self.bounds.max_depth_per_tenant;
        let state = self.tenant_mut(tenant);
        if state.depth >= max {
            return Err(Full::Tenant { max });
        }
        state.depth += 1;
        self.depth += 1;
        Ok(())
    }

    /// Gives back a place whose request was not committed.
    pub fn release(&mut self, tenant: &str) {
        if let Some(state) = self.tenants.get_mut(tenant) {
            state.depth = state.depth.saturating_sub(1);
            self.depth = self.depth.saturating_sub(1);
        }
        self.forget_if_idle(tenant);
    }

    /// Adds a committed event whose place was reserved; it is due at `due_ms`.
    pub fn admit(&mut self, job: Job, due_ms: i64, now_ms: i64) {
        let flow = self.flow_mut(&job.tenant, &job.flow);
        flow.ages.insert((job.accepted_at_ms, job.id));
        if due_ms > now_ms {
            flow.depth.retrying += 1;
            self.delay(job, due_ms);
        } else {
            flow.depth.ready += 1;
            self.push_ready(job);
        }
    }

    /// Adds a committed event without a reservation, whatever the bounds: what a start resumes.
    pub fn restore(&mut self, job: Job, due_ms: i64, now_ms: i64) {
        self.tenant_mut(&job.tenant).depth += 1;
        self.depth += 1;
        self.admit(job, due_ms, now_ms);
    }

    /// The next event to run: retries that are due become ready first, then the tenants with
    /// ready events take turns, skipping those at their in-flight bound.
    pub fn next(&mut self, now_ms: i64) -> Option<Job> {
        while let Some(Reverse(first)) = self.delayed.peek() {
            if first.due_ms > now_ms {
                break;
            }
            let Some(Reverse(Delayed { id, .. })) = self.delayed.pop() else {
                break;
            };
            if let Some(job) = self.waiting.remove(&id) {
                let depth = &mut self.flow_mut(&job.tenant, &job.flow).depth;
                depth.retrying -= 1;
                depth.ready += 1;
                self.push_ready(job);
            }
        }
        for _ in 0..self.rotation.len() {
            let tenant = self.rotation.pop_front()?;
            let cap = self.bounds.max_in_flight_per_tenant;
            let Some(state) = self.tenants.get_mut(&tenant) else {
                continue;
            };
            if state.ready.is_empty() {
                state.in_rotation = false;
                continue;
            }
            if state.in_flight >= cap {
                self.rotation.push_back(tenant);
                continue;
            }
            let job = state.ready.pop_front()?;
            state.in_flight += 1;
            if state.ready.is_empty() {
                state.in_rotation = false;
            } else {
                self.rotation.push_back(tenant);
            }
            self.in_flight += 1;
            self.running.insert(job.id);
            let depth = &mut self.flow_mut(&job.tenant, &job.flow).depth;
            depth.ready -= 1;
            depth.in_flight += 1;
            return Some(job);
        }
        None
    }

    /// When the earliest retry is due, if any waits.
    pub fn wake_at(&self) -> Option<i64> {
        self.delayed.peek().map(|Reverse(d)| d.due_ms)
    }

    /// Ends a run that [`Scheduler::next`] handed out.
    pub fn finish(&mut self, mut job: Job, finish: Finish) {
        if let Some(state) = self.tenants.get_mut(&job.tenant) {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        self.running.remove(&job.id);
        let finish = match self.disowned.remove(&job.id) {
            true => Finish::Gone,
            false => finish,
        };
        let flow = self.flow_mut(&job.tenant, &job.flow);
        flow.depth.in_flight -= 1;
        match finish {
            Finish::Gone => self.leave(&job),
            Finish::Retry { due_ms } => {
                flow.depth.retrying += 1;
                job.attempts += 1;
                job.deferrals = 0;
                self.delay(job, due_ms);
            }
            Finish::Later { due_ms } => {
                flow.depth.retrying += 1;
                self.delay(job, due_ms);
            }
        }
    }

    /// A flow's events right now.
    pub fn flow_depth(&self, tenant: &str, flow: &str) -> FlowDepth {
        self.flows
            .get(&(Arc::from(tenant), Arc::from(flow)))
            .map(|f| FlowDepth {
                oldest_accepted_at_ms: f.ages.first().map(|&(at, _)| at),
                ..f.depth
            })
            .unwrap_or_default()
    }

    fn delay(&mut self, job: Job, due_ms: i64) {
        self.delayed.push(Reverse(Delayed { due_ms, id: job.id }));
        self.waiting.insert(job.id, job);
    }

    fn push_ready(&mut self, job: Job) {
        let tenant = job.tenant.clone();
        let state = self.tenant_mut(&tenant);
        state.ready.push_back(job);
        if !state.in_rotation {
            state.in_rotation = true;
            self.rotation.push_back(tenant);
        }
    }

    /// Takes `job`, no longer ready, waiting or running, out of the counts.
    fn leave(&mut self, job: &Job) {
        let flow = self.flow_mut(&job.tenant, &job.flow);
        flow.ages.remove(&(job.accepted_at_ms, job.id));
        self.forget_flow_if_idle(&job.tenant, &job.flow);
        if let Some(state) = self.tenants.get_mut(&job.tenant) {
            state.depth = state.depth.saturating_sub(1);
        }
        self.depth = self.depth.saturating_sub(1);
        self.forget_if_idle(&job.tenant);
    }

    fn tenant_mut(&mut self, tenant: &str) -> &mut TenantState {
        if !self.tenants.contains_key(tenant) {
            self.tenants
                .insert(Arc::from(tenant), TenantState::default());
        }
        self.tenants.get_mut(tenant).expect("inserted above")
    }

    fn flow_mut(&mut self, tenant: &Arc<str>, flow: &Arc<str>) -> &mut FlowState {
        self.flows
            .entry((tenant.clone(), flow.clone()))
            .or_default()
    }

    fn forget_if_idle(&mut self, tenant: &str) {
        if let Some(state) = self.tenants.get(tenant)
            && state.depth == 0
            && state.in_flight == 0
            && !state.in_rotation
        {
            self.tenants.remove(tenant);
        }
    }

    fn forget_flow_if_idle(&mut self, tenant: &Arc<str>, flow: &Arc<str>) {
        let key = (tenant.clone(), flow.clone());
        if self.flows.get(&key).is_some_and(|f| f.ages.is_empty()) {
            self.flows.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(depth: usize, per_tenant: usize, in_flight: usize) -> Bounds {
        Bounds {
            max_depth: depth,
            max_depth_per_tenant: per_tenant,
            max_in_flight_per_tenant: in_flight,
        }
    }

    fn job(id: u64, tenant: &str) -> Job {
        Job {
            id,
            tenant: tenant.into(),
            flow: "log".into(),
            call_sid: Some(format!("sid-{id}")),
            query: String::new(),
            accepted_at_ms: id as i64,
            attempts: 0,
            accepted: None,
            deferrals: 0,
        }
    }

    fn add(s: &mut Scheduler, id: u64, tenant: &str) {
        s.reserve(tenant).unwrap();
        s.admit(job(id, tenant), 0, 0);
    }

    /// Events another node took: those ready or retrying leave at once, a running one when its
    /// run ends (even as a retry), and the others stay, counted as before.
    #[test]
    fn events_let_go_of_leave_the_counts_and_never_run_again() {
        let mut s = Scheduler::new(bounds(100, 100, 10));
        for id in 1..=4 {
            add(&mut s, id, "acme");
        }
        let running = s.next(0).unwrap();
        assert_eq!(running.id, 1);
        // 2 fails and waits for its retry; 3 and 4 are ready.
        let retrying = s.next(0).unwrap();
        s.finish(retrying, Finish::Retry { due_ms: 50 });
        let mut held = s.held();
        held.sort_unstable();
        assert_eq!(held, [1, 2, 3, 4]);

        let taken: HashSet<u64> = [1, 2, 3].into();
        assert_eq!(
            s.forget(&taken),
            2,
            "the ready and the retrying one leave at once"
        );
        assert_eq!(s.depth(), 2);
        let depth = s.flow_depth("acme", "log");
        assert_eq!((depth.ready, depth.retrying, depth.in_flight), (1, 0, 1));

        s.finish(running, Finish::Retry { due_ms: 10 });
        assert_eq!(s.depth(), 1, "the running one left when its run ended");
        let next = s.next(100).unwrap();
        assert_eq!(next.id, 4);
        s.finish(next, Finish::Gone);
        assert_eq!(s.next(1_000), None, "a taken event ran again");
        assert_eq!(s.depth(), 0);
        assert!(s.held().is_empty());
        assert_eq!(s.flow_depth("acme", "log"), FlowDepth::default());
    }

    /// A running event let go of, then claimed back before its run ended, is held as before.
    #[test]
    fn a_running_event_taken_back_stays_when_its_run_ends() {
        let mut s = Scheduler::new(bounds(100, 100, 10));
        add(&mut s, 1, "acme");
        let running = s.next(0).unwrap();
        assert_eq!(s.forget(&[1].into()), 0);
        s.take_back(1);
        s.finish(running, Finish::Retry { due_ms: 10 });
        assert_eq!(s.depth(), 1);
        assert_eq!(s.held(), [1]);
        assert_eq!(s.next(10).unwrap().attempts, 1);
    }

    #[test]
    fn a_flooding_tenant_takes_turns_with_the_others() {
        let mut s = Scheduler::new(bounds(1_000, 1_000, 10));
        for id in 0..100 {
            add(&mut s, id, "flood");
        }
        add(&mut s, 1_000, "quiet");
        add(&mut s, 1_001, "quiet");
        let order: Vec<String> = (0..6)
            .map(|_| {
                let j = s.next(0).unwrap();
                let t = j.tenant.to_string();
                s.finish(j, Finish::Gone);
                t
            })
            .collect();
        assert_eq!(
            order,
            ["flood", "quiet", "flood", "quiet", "flood", "flood"]
        );
    }

    #[test]
    fn a_tenant_never_holds_more_workers_than_its_bound() {
        let mut s = Scheduler::new(bounds(1_000, 1_000, 2));
        for id in 0..10 {
            add(&mut s, id, "slow");
        }
        let a = s.next(0).unwrap();
        let b = s.next(0).unwrap();
        assert_eq!(
            s.next(0),
            None,
            "a third worker must not take the same tenant"
        );
        add(&mut s, 50, "other");
        assert_eq!(s.next(0).unwrap().tenant.as_ref(), "other");
        s.finish(a, Finish::Gone);
        assert_eq!(s.next(0).unwrap().tenant.as_ref(), "slow");
        s.finish(b, Finish::Gone);
        assert_eq!(s.in_flight(), 2);
    }

    #[test]
    fn depth_is_bounded_in_all_and_per_tenant_and_released_on_failure() {
        let mut s = Scheduler::new(bounds(3, 2, 1));
        s.reserve("a").unwrap();
        s.reserve("a").unwrap();
        assert_eq!(s.reserve("a"), Err(Full::Tenant { max: 2 }));
        s.reserve("b").unwrap();
        assert_eq!(s.reserve("c"), Err(Full::Queue { max: 3 }));
        s.release("b");
        s.reserve("c").unwrap();
        assert_eq!(s.depth(), 3);
        // Handled events give their place back.
        s.admit(job(1, "a"), 0, 0);
        let j = s.next(0).unwrap();
        s.finish(j, Finish::Gone);
        assert_eq!(s.depth(), 2);
        s.reserve("a").unwrap();
    }

    #[test]
    fn retries_wait_until_due_and_keep_their_place_in_the_depth() {
        let mut s = Scheduler::new(bounds(10, 10, 1));
        add(&mut s, 7, "a");
        let j = s.next(100).unwrap();
        assert_eq!(j.attempts, 0);
        s.finish(j, Finish::Retry { due_ms: 500 });
        assert_eq!(s.wake_at(), Some(500));
        assert_eq!(s.next(499), None);
        let d = s.flow_depth("a", "log");
        assert_eq!((d.ready, d.retrying, d.in_flight), (0, 1, 0));
        assert_eq!(d.oldest_accepted_at_ms, Some(7));
        let j = s.next(500).unwrap();
        assert_eq!((j.id, j.attempts), (7, 1));
        assert_eq!(s.flow_depth("a", "log").in_flight, 1);
        assert_eq!(s.depth(), 1);
        s.finish(j, Finish::Gone);
        assert_eq!(s.flow_depth("a", "log"), FlowDepth::default());
        assert_eq!((s.depth(), s.in_flight(), s.wake_at()), (0, 0, None));
    }

    #[test]
    fn restored_events_ignore_the_bounds_and_future_ones_wait() {
        let mut s = Scheduler::new(bounds(1, 1, 5));
        s.restore(job(1, "a"), 0, 1_000);
        s.restore(job(2, "a"), 5_000, 1_000);
        assert_eq!(s.depth(), 2);
        assert_eq!(s.reserve("a"), Err(Full::Queue { max: 1 }));
        assert_eq!(s.next(1_000).map(|j| j.id), Some(1));
        assert_eq!(s.next(1_000), None);
        assert_eq!(s.next(5_000).map(|j| j.id), Some(2));
    }
}
