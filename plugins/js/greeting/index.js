// greeting in JavaScript: the text a Greeting applet reads out, by the time of day in India.
//
// The same plugin as the Rust `plugins/greeting`, text for text and reason for reason. The hour
// comes from Exotel's `CurrentTime` (India time), or `StartTime` when it is absent. The flow's
// config may replace each text: `morning` (5:00 to 11:59), `afternoon` (12:00 to 16:59),
// `evening` (17:00 to 4:59), and `unknown` when the request carries neither time. Built against
// the world `greeter`: it exports `greeting`, whose text is answered as `text/plain`.

import { config } from "passthru:plugin/host@0.1.4";

// India is UTC+05:30, all year. Unix seconds are an s64, a BigInt here.
const IST_OFFSET_SECONDS = BigInt(5 * 3600 + 30 * 60);
const DAY = 86400n;

const DEFAULT_TEXTS = {
  morning: "Good morning, thank you for calling.",
  afternoon: "Good afternoon, thank you for calling.",
  evening: "Good evening, thank you for calling.",
};

/** The flow's text for `key`; an empty one is kept, as it is in Rust. */
function configured(key, fallback) {
  return config(key) ?? fallback;
}

function hourInIndia(unixSeconds) {
  // `%` keeps the dividend's sign: add a day to what is negative, as Rust's rem_euclid would.
  const rem = (BigInt(unixSeconds) + IST_OFFSET_SECONDS) % DAY;
  return Number((rem < 0n ? rem + DAY : rem) / 3600n);
}

function partOfDay(hour) {
  if (hour >= 5 && hour <= 11) {
    return "morning";
  }
  if (hour >= 12 && hour <= 16) {
    return "afternoon";
  }
  return "evening";
}

export function greeting(call) {
  // A CurrentTime Exotel sent in a shape we cannot read is not replaced by StartTime.
  const time = call.currentTime ?? call.startTime;
  const unixSeconds = time?.unixSeconds;
  if (unixSeconds === undefined || unixSeconds === null) {
    const text = configured("unknown", "Hello, thank you for calling.");
    return { text, reason: "no CurrentTime or StartTime" };
  }
  const part = partOfDay(hourInIndia(unixSeconds));
  return { text: configured(part, DEFAULT_TEXTS[part]), reason: `${part} in India` };
}
