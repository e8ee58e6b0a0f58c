//! Exotel's `Legs[i][Field]` parameters, gathered into one [`Leg`] per index.
//!
//! After a Connect applet, Exotel describes each attempted destination with bracketed keys such as
//! `Legs[0][Number]` (the brackets may arrive percent-encoded; keys are decoded before they get
//! here). Indexes can arrive in any order and with gaps, and some keys go deeper
//! (`Legs[1][Insights][Status]`). Legs are kept in a map keyed by index while the query is read, so
//! there can never be more legs than parameters.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{number, text};

/// One attempted destination of a Connect applet, from the `Legs[i][Field]` parameters.
///
/// A leg is listed when any key `Legs[i][...]` names it, even one whose field is unknown here or
/// nested deeper (`Legs[1][Insights][Status]`); such keys are only in
/// [`CallDetails::params`](super::CallDetails::params). Fields follow the same rules as the call's:
/// empty or malformed is `None`, and a repeated key's last value wins.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Leg {
    /// The `i` in `Legs[i]`. Legs are listed in index order; an index Exotel skipped is absent.
    pub index: u32,
    /// `Number`: the number dialled, or `sip:<id>`.
    pub number: Option<String>,
    /// `Type`: `single` or `parallel`.
    pub leg_type: Option<String>,
    /// `OnCallDuration`: seconds the leg was on the call.
    pub on_call_duration: Option<u32>,
    /// `CauseCode`: an enum such as `USER_BUSY`.
    pub cause_code: Option<String>,
    /// `Cause`: the ISDN cause number, as sent.
    pub cause: Option<String>,
    /// `CallerId`: the number shown to this leg.
    pub caller_id: Option<String>,
    /// `DisconnectedBy`: which side hung up, as sent.
    pub disconnected_by: Option<String>,
}

impl Leg {
    /// Applies the value of `Legs[i][field]`; unknown or nested fields change nothing.
    fn set(&mut self, field: &str, value: &str) {
        match field {
            "Number" => self.number = text(value),
            "Type" => self.leg_type = text(value),
            "OnCallDuration" => self.on_call_duration = number(value),
            "CauseCode" => self.cause_code = text(value),
            "Cause" => self.cause = text(value),
            "CallerId" => self.caller_id = text(value),
            "DisconnectedBy" => self.disconnected_by = text(value),
            _ => {}
        }
    }
}

/// The legs seen so far in one query, by index.
#[derive(Debug, Default)]
pub(super) struct Legs(BTreeMap<u32, Leg>);

impl Legs {
    /// Applies one decoded parameter if its key names a leg (`Legs[i][...]`); ignores it otherwise.
    pub(super) fn set(&mut self, key: &str, value: &str) {
        if let Some((index, field)) = leg_key(key) {
            self.0
                .entry(index)
                .or_insert_with(|| Leg {
                    index,
                    ..Leg::default()
                })
                .set(field, value);
        }
    }

    /// The legs, in index order.
    pub(super) fn into_vec(self) -> Vec<Leg> {
        self.0.into_values().collect()
    }
}

/// Splits a decoded key `Legs[i][...]` into the leg index and its field.
///
/// `Legs[3][Number]` gives `(3, "Number")`. A deeper path (`Legs[1][Insights][Status]`) gives the
/// path without its outer brackets (`"Insights][Status"`), and a field without its closing bracket
/// gives `""`: neither matches a field, but the leg exists. `None` when the key does not start
/// with `Legs[<decimal u32>][`, so a non-numeric or overflowing index names no leg.
fn leg_key(key: &str) -> Option<(u32, &str)> {
    let rest = key.strip_prefix("Legs[")?;
    let (index, rest) = rest.split_once(']')?;
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let index = index.parse().ok()?;
    let field = rest.strip_prefix('[')?;
    Some((index, field.strip_suffix(']').unwrap_or("")))
}

#[cfg(test)]
mod tests {
    use super::Leg;
    use crate::call::parse;
    use crate::call::tests::{leg, s};

    #[test]
    fn reads_legs() {
        let cases: &[(&str, &[Leg])] = &[
            // Raw and percent-encoded brackets name the same leg.
            (
                "Legs[0][Number]=1&Legs%5B0%5D%5BType%5D=single",
                &[Leg {
                    number: s("1"),
                    leg_type: s("single"),
                    ..leg(0)
                }],
            ),
            (
                "Legs%5b1%5d%5bCause%5d=17",
                &[Leg {
                    cause: s("17"),
                    ..leg(1)
                }],
            ),
            // Out of order and with gaps: sorted, real indexes kept.
            (
                "Legs[5][Number]=a&Legs[2][Type]=parallel&Legs[0][Cause]=16&Legs[2][Number]=b",
                &[
                    Leg {
                        cause: s("16"),
                        ..leg(0)
                    },
                    Leg {
                        number: s("b"),
                        leg_type: s("parallel"),
                        ..leg(2)
                    },
                    Leg {
                        number: s("a"),
                        ..leg(5)
                    },
                ],
            ),
            // Every field.
            (
                "Legs[0][Number]=09800000006&Legs[0][Type]=single&Legs[0][OnCallDuration]=+12+\
                 &Legs[0][CauseCode]=NORMAL_CLEARING&Legs[0][Cause]=16&Legs[0][CallerId]=080001\
                 &Legs[0][DisconnectedBy]=callee",
                &[Leg {
                    index: 0,
                    number: s("09800000006"),
                    leg_type: s("single"),
                    on_call_duration: Some(12),
                    cause_code: s("NORMAL_CLEARING"),
                    cause: s("16"),
                    caller_id: s("080001"),
                    disconnected_by: s("callee"),
                }],
            ),
            // Nested, unknown, empty or unclosed fields make the leg exist, nothing more.
            ("Legs[1][Insights][Status]=ok", &[leg(1)]),
            (
                "Legs%5B3%5D%5BInsights%5D%5BStatus%5D=ok&Legs[4][Colour]=red",
                &[leg(3), leg(4)],
            ),
            (
                "Legs[0][]=x&Legs[1][Number=y&Legs[2][number]=z",
                &[leg(0), leg(1), leg(2)],
            ),
            // Repeats: the last value wins, even an empty one.
            (
                "Legs[0][Number]=a&Legs[0][Number]=b&Legs[0][Type]=x&Legs[0][Type]=",
                &[Leg {
                    number: s("b"),
                    ..leg(0)
                }],
            ),
            // OnCallDuration must be a decimal u32.
            (
                "Legs[0][OnCallDuration]=4.5&Legs[1][OnCallDuration]=-1",
                &[leg(0), leg(1)],
            ),
            ("Legs[2][OnCallDuration]=4294967296", &[leg(2)]),
            (
                "Legs[7][OnCallDuration]=4294967295",
                &[Leg {
                    on_call_duration: Some(u32::MAX),
                    ..leg(7)
                }],
            ),
            // The largest index, and leading zeros.
            (
                "Legs[4294967295][Number]=9&Legs[007][Number]=7",
                &[
                    Leg {
                        number: s("7"),
                        ..leg(7)
                    },
                    Leg {
                        number: s("9"),
                        ..leg(u32::MAX)
                    },
                ],
            ),
            // Indexes that are not a decimal u32, and keys that are not `Legs[i][...]`: no leg.
            (
                "Legs[x][Number]=1&Legs[4294967296][Number]=2&Legs[-1][Number]=3&Legs[][Number]=4\
                 &Legs[%2B1][Number]=5&Legs[+1][Number]=5&Legs[%201][Number]=6&Legs[0]=7\
                 &Legs[1]x=8&legs[0][Number]=9&Legs0][Number]=10&Legs[0=11&XLegs[0][Number]=12\
                 &Legs=13&Legs[%EF%BC%91][Number]=14",
                &[],
            ),
        ];
        for (query, want) in cases {
            let call = parse(query);
            assert_eq!(call.legs, *want, "legs of {query:?}");
            // Every key, leg or not, is still in params.
            assert_eq!(
                call.params.len(),
                query.split('&').count(),
                "params of {query:?}"
            );
        }
    }
}
