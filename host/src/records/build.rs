//! The one way a [`DecisionRecord`] is made, for a sync decision and an async attempt alike:
//! which flow and version it is about ([`Subject`]), what was answered ([`Answer`]), and what the
//! sandbox measured ([`Usage`]).

use crate::sandbox::outbound::OutboundRecord;
use crate::sandbox::{Branch, LogLine, MemoryUse, Report, SandboxError};
use crate::secrets::redact;
use crate::store::{DecisionRecord, now_ms};

/// The flow and plugin version a record is about.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub tenant: &'a str,
    pub flow: &'a str,
    pub plugin: &'a str,
    pub version: u32,
    /// The flow's secrets' values: blanked out of the answer's summary (the sandbox has done so
    /// in the log, the reason and the error already).
    pub secrets: &'a [String],
}

/// What the call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The branch answered: the plugin's, or the fallback (async: success when handled).
    pub branch: Branch,
    /// `decided`, `recorded`, or the failure kind.
    pub outcome: String,
    pub reason: Option<String>,
    pub error: Option<String>,
    /// What a hook other than `passthru` answered besides the branch.
    pub answer: Option<String>,
}

/// What one sandbox call used and wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub fuel_used: u64,
    pub elapsed_us: u64,
    pub log: Vec<LogLine>,
    /// Log lines dropped past the caps.
    pub log_dropped: u32,
    /// The outbound requests the call sent or was refused.
    pub outbound: Vec<OutboundRecord>,
    /// The call's linear memory (not kept with the record: dry runs and backtests report it).
    pub memory: MemoryUse,
}

impl Usage {
    /// Splits a sandbox report into its outcome and what the call used.
    pub fn of<T>(report: Report<T>) -> (Result<T, SandboxError>, Usage) {
        let usage = Usage {
            fuel_used: report.fuel_used,
            elapsed_us: u64::try_from(report.elapsed.as_micros()).unwrap_or(u64::MAX),
            log: report.log,
            log_dropped: report.log_dropped,
            outbound: report.outbound,
            memory: report.memory,
        };
        (report.outcome, usage)
    }
}

impl DecisionRecord {
    /// A record made now; the store assigns its id.
    pub fn new(
        subject: Subject<'_>,
        call_sid: Option<String>,
        answer: Answer,
        usage: Usage,
    ) -> Self {
        DecisionRecord {
            id: 0,
            tenant: subject.tenant.to_owned(),
            flow: subject.flow.to_owned(),
            plugin: subject.plugin.to_owned(),
            version: subject.version,
            call_sid,
            branch: answer.branch,
            outcome: answer.outcome,
            reason: answer.reason,
            error: answer.error,
            answer: answer
                .answer
                .map(|a| redact(&a, subject.secrets).unwrap_or(a)),
            fuel_used: usage.fuel_used,
            elapsed_us: usage.elapsed_us,
            log: usage.log,
            log_dropped: usage.log_dropped,
            outbound: usage.outbound,
            at_ms: now_ms(),
            query: None,
            replay: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sandbox::{LogLevel, Report};

    #[test]
    fn a_report_becomes_a_record_with_every_field_kept() {
        let line = LogLine {
            level: LogLevel::Info,
            message: "hello".into(),
        };
        let report: Report<u8> = Report {
            outcome: Ok(7),
            fuel_used: 1234,
            elapsed: Duration::from_micros(56),
            log: vec![line.clone()],
            log_dropped: 2,
            outbound: Vec::new(),
            memory: crate::sandbox::MemoryUse::default(),
        };
        let (outcome, usage) = Usage::of(report);
        assert_eq!(outcome.unwrap(), 7);
        let before = now_ms();
        let record = DecisionRecord::new(
            Subject {
                tenant: "t",
                flow: "f",
                plugin: "p",
                version: 3,
                secrets: &[],
            },
            Some("sid".into()),
            Answer {
                branch: Branch::Failure,
                outcome: "trap".into(),
                reason: None,
                error: Some("boom".into()),
                answer: None,
            },
            usage,
        );
        assert_eq!(
            (
                record.tenant.as_str(),
                record.flow.as_str(),
                record.plugin.as_str()
            ),
            ("t", "f", "p")
        );
        assert_eq!(record.version, 3);
        assert_eq!(record.call_sid.as_deref(), Some("sid"));
        assert_eq!(record.branch, Branch::Failure);
        assert_eq!(record.outcome, "trap");
        assert_eq!(record.error.as_deref(), Some("boom"));
        assert_eq!((record.fuel_used, record.elapsed_us), (1234, 56));
        assert_eq!((record.log, record.log_dropped), (vec![line], 2));
        assert!(record.at_ms >= before);
    }
}
