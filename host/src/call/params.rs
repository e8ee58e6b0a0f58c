//! Every parameter of a call's query, decoded, in the order it arrived: [`Params`].

use std::fmt;

use serde::ser::{Serialize, SerializeSeq, Serializer};

/// The decoded parameters of a query: names and values, in order, repeats included.
///
/// Their text lives in one buffer, with the end of each name and value beside it, rather than
/// in a `String` apiece: a real Exotel query has 16 parameters, which is 32 allocations on every
/// call and as many frees, where this makes two. A parameter's name starts where the previous
/// parameter's value ends, and its value where its name ends.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Params {
    text: String,
    /// For each parameter, where its name ends and where its value ends, in `text`.
    ends: Vec<(usize, usize)>,
}

impl Params {
    /// Room for `count` parameters totalling `bytes` of text.
    pub(super) fn with_capacity(count: usize, bytes: usize) -> Self {
        Self {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(count),
        }
    }

    /// Adds a parameter after the others: `write` appends `name`, then `value`, to the text as
    /// it likes (decoding them, say).
    pub(super) fn push_with(
        &mut self,
        name: &str,
        value: &str,
        mut write: impl FnMut(&mut String, &str),
    ) {
        write(&mut self.text, name);
        let name_end = self.text.len();
        write(&mut self.text, value);
        self.ends.push((name_end, self.text.len()));
    }

    /// Adds a parameter after the others.
    pub fn push(&mut self, name: &str, value: &str) {
        self.text.push_str(name);
        let name_end = self.text.len();
        self.text.push_str(value);
        self.ends.push((name_end, self.text.len()));
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The `index`th parameter, as `(name, value)`.
    pub fn get(&self, index: usize) -> Option<(&str, &str)> {
        let &(name_end, value_end) = self.ends.get(index)?;
        let start = match index {
            0 => 0,
            _ => self.ends[index - 1].1,
        };
        Some((&self.text[start..name_end], &self.text[name_end..value_end]))
    }

    /// Every parameter, as `(name, value)`, in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            params: self,
            front: 0,
            back: self.len(),
        }
    }

    /// The value of the last parameter called `name` (Exotel appends, so the last is the newest).
    pub fn last(&self, name: &str) -> Option<&str> {
        self.iter().rev().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// The bytes of every name and value together.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// How many parameters there is room for without growing the list.
    #[cfg(test)]
    pub(super) fn room(&self) -> usize {
        self.ends.capacity()
    }

    /// Every parameter as an owned pair, in order.
    pub fn owned(&self) -> impl DoubleEndedIterator<Item = (String, String)> + '_ {
        self.iter().map(|(k, v)| (k.to_owned(), v.to_owned()))
    }

    /// Each parameter as an owned pair: what the WIT's `params` list is made of.
    pub fn to_vec(&self) -> Vec<(String, String)> {
        self.owned().collect()
    }
}

/// The parameters of a [`Params`], in order.
pub struct Iter<'a> {
    params: &'a Params,
    front: usize,
    back: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.front == self.back {
            return None;
        }
        self.front += 1;
        self.params.get(self.front - 1)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.back - self.front;
        (left, Some(left))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.front == self.back {
            return None;
        }
        self.back -= 1;
        self.params.get(self.back)
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Params {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Params {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let mut params = Self::default();
        for (k, v) in pairs {
            params.push(k.as_ref(), v.as_ref());
        }
        params
    }
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A list of `[name, value]` pairs, as a list of pairs of strings would be.
impl Serialize for Params {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for pair in self.iter() {
            seq.serialize_element(&pair)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::Params;
    use proptest::prelude::*;

    #[test]
    fn keeps_empty_names_and_values_apart() {
        let params: Params = [("", "a"), ("b", ""), ("", ""), ("c", "d")]
            .into_iter()
            .collect();
        assert_eq!(params.len(), 4);
        assert_eq!(params.get(0), Some(("", "a")));
        assert_eq!(params.get(1), Some(("b", "")));
        assert_eq!(params.get(2), Some(("", "")));
        assert_eq!(params.get(3), Some(("c", "d")));
        assert_eq!(params.get(4), None);
        assert_eq!(params.text_len(), 4);
    }

    #[test]
    fn the_last_of_a_repeated_name_is_found() {
        let params: Params = [("a", "1"), ("b", "2"), ("a", "3")].into_iter().collect();
        assert_eq!(params.last("a"), Some("3"));
        assert_eq!(params.last("b"), Some("2"));
        assert_eq!(params.last("A"), None);
    }

    #[test]
    fn serializes_as_a_list_of_pairs() {
        let params: Params = [("a", "1"), ("é", "\"")].into_iter().collect();
        let pairs = vec![("a", "1"), ("é", "\"")];
        assert_eq!(
            serde_json::to_string(&params).unwrap(),
            serde_json::to_string(&pairs).unwrap()
        );
        assert_eq!(format!("{params:?}"), format!("{pairs:?}"));
    }

    proptest! {
        /// Whatever is pushed comes back out, in order and from either end.
        #[test]
        fn gives_back_what_was_pushed(pairs in proptest::collection::vec((".*", ".*"), 0..12)) {
            let params: Params = pairs.iter().cloned().collect();
            prop_assert_eq!(params.len(), pairs.len());
            prop_assert_eq!(params.to_vec(), pairs.clone());
            let backwards: Vec<(String, String)> =
                params.iter().rev().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            let mut want = pairs.clone();
            want.reverse();
            prop_assert_eq!(backwards, want);
            prop_assert_eq!(params.iter().len(), pairs.len());
        }
    }
}
