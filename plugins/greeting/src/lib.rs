//! `greeting`: the text a Greeting applet reads out, by the time of day in India.
//!
//! The hour comes from Exotel's `CurrentTime` (India time), or `StartTime` when it is absent. The
//! flow's config may replace each text: `morning` (5:00 to 11:59), `afternoon` (12:00 to 16:59),
//! `evening` (17:00 to 4:59), and `unknown` when the request carries neither time.

use passthru_sdk::{Call, Reply, config};

/// India is UTC+05:30, all year.
const IST_OFFSET_SECONDS: i64 = 5 * 3600 + 30 * 60;

fn greeting(call: &Call) -> Reply {
    let details = call.details();
    let time = details
        .current_time
        .as_ref()
        .or(details.start_time.as_ref());
    let Some(unix) = time.and_then(|t| t.unix_seconds) else {
        let text = config("unknown").unwrap_or_else(|| "Hello, thank you for calling.".into());
        return Reply::new(text, "no CurrentTime or StartTime");
    };
    let part = part_of_day(hour_in_india(unix));
    let text = config(part).unwrap_or_else(|| default_text(part).into());
    Reply::new(text, format!("{part} in India"))
}

fn hour_in_india(unix_seconds: i64) -> u32 {
    ((unix_seconds + IST_OFFSET_SECONDS).rem_euclid(86_400) / 3600) as u32
}

fn part_of_day(hour: u32) -> &'static str {
    match hour {
        5..=11 => "morning",
        12..=16 => "afternoon",
        _ => "evening",
    }
}

fn default_text(part: &str) -> &'static str {
    match part {
        "morning" => "Good morning, thank you for calling.",
        "afternoon" => "Good afternoon, thank you for calling.",
        _ => "Good evening, thank you for calling.",
    }
}

passthru_sdk::plugin!(greeting = greeting);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_are_india_time_across_midnight_utc() {
        // 2024-07-31 00:00:00 UTC is 05:30 in India.
        assert_eq!(hour_in_india(1_722_384_000), 5);
        // 2024-07-31 20:00:00 UTC is 01:30 the next day in India.
        assert_eq!(hour_in_india(1_722_456_000), 1);
        assert_eq!(part_of_day(5), "morning");
        assert_eq!(part_of_day(12), "afternoon");
        assert_eq!(part_of_day(17), "evening");
        assert_eq!(part_of_day(1), "evening");
    }
}
