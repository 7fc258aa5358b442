//! Serde helpers for the wire types: JSON fields that are "a string or a
//! list" (`content`, `system`, `stop`) or "a string or an object"
//! (`tool_choice`), read without serde's buffering of untagged enums —
//! buffering would copy every string and cannot hold a `RawValue`.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// A JSON string, or a list of `T`.
#[derive(Debug, Clone, PartialEq)]
pub enum TextOrList<'a, T> {
    Text(Cow<'a, str>),
    List(Vec<T>),
}

/// A JSON string, or one object `T`.
#[derive(Debug, Clone, PartialEq)]
pub enum TextOrObject<'a, T> {
    Text(Cow<'a, str>),
    Object(T),
}

impl<T: Serialize> Serialize for TextOrList<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TextOrList::Text(t) => s.serialize_str(t),
            TextOrList::List(l) => l.serialize(s),
        }
    }
}

impl<T: Serialize> Serialize for TextOrObject<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TextOrObject::Text(t) => s.serialize_str(t),
            TextOrObject::Object(o) => o.serialize(s),
        }
    }
}

/// Accepts a string (borrowed when it has no escapes), a sequence or a map;
/// `Out` decides which of them it takes.
struct Either<'a, T, Out>(PhantomData<(&'a (), T, Out)>);

trait Shape<'a, T>: Sized {
    const EXPECTING: &'static str;
    fn text(t: Cow<'a, str>) -> Self;
    fn list(_: Vec<T>) -> Option<Self> {
        None
    }
    fn object(_: T) -> Option<Self> {
        None
    }
}

impl<'a, T> Shape<'a, T> for TextOrList<'a, T> {
    const EXPECTING: &'static str = "a string or an array";
    fn text(t: Cow<'a, str>) -> Self {
        TextOrList::Text(t)
    }
    fn list(l: Vec<T>) -> Option<Self> {
        Some(TextOrList::List(l))
    }
}

impl<'a, T> Shape<'a, T> for TextOrObject<'a, T> {
    const EXPECTING: &'static str = "a string or an object";
    fn text(t: Cow<'a, str>) -> Self {
        TextOrObject::Text(t)
    }
    fn object(o: T) -> Option<Self> {
        Some(TextOrObject::Object(o))
    }
}

impl<'de: 'a, 'a, T: Deserialize<'de>, Out: Shape<'a, T>> Visitor<'de> for Either<'a, T, Out> {
    type Value = Out;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(Out::EXPECTING)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Out, E> {
        Ok(Out::text(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Out, E> {
        Ok(Out::text(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Out, E> {
        Ok(Out::text(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Out, A::Error> {
        // Bounded by the body size; no pre-allocation from a size hint.
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Out::list(items).ok_or_else(|| de::Error::invalid_type(de::Unexpected::Seq, &self))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Out, A::Error> {
        let o = T::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Out::object(o).ok_or_else(|| de::Error::invalid_type(de::Unexpected::Map, &self))
    }
}

impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for TextOrList<'a, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Either::<'a, T, Self>(PhantomData))
    }
}

impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for TextOrObject<'a, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Either::<'a, T, Self>(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    #[derive(Debug, Deserialize, Serialize)]
    struct Part<'a> {
        #[serde(borrow)]
        text: Cow<'a, str>,
        #[serde(borrow)]
        raw: Option<&'a RawValue>,
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let t: TextOrList<Part> = serde_json::from_str(r#""plain""#).unwrap();
        assert!(matches!(t, TextOrList::Text(Cow::Borrowed("plain"))));
        let t: TextOrList<Part> = serde_json::from_str(r#""a\nb""#).unwrap();
        assert!(matches!(t, TextOrList::Text(Cow::Owned(ref s)) if s == "a\nb"));
    }

    #[test]
    fn lists_and_objects_keep_raw_values() {
        let t: TextOrList<Part> =
            serde_json::from_str(r#"[{"text":"x","raw":{"a": [1, 2]}}]"#).unwrap();
        let TextOrList::List(l) = &t else {
            panic!("{t:?}")
        };
        assert_eq!(l[0].raw.unwrap().get(), r#"{"a": [1, 2]}"#);
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"[{"text":"x","raw":{"a": [1, 2]}}]"#
        );
        let o: TextOrObject<Part> = serde_json::from_str(r#"{"text":"y","raw":null}"#).unwrap();
        assert!(matches!(o, TextOrObject::Object(Part { raw: None, .. })));
        let o: TextOrObject<Part> = serde_json::from_str(r#""auto""#).unwrap();
        assert_eq!(serde_json::to_string(&o).unwrap(), r#""auto""#);
    }

    #[test]
    fn wrong_shapes_are_errors() {
        assert!(serde_json::from_str::<TextOrList<Part>>("{}").is_err());
        assert!(serde_json::from_str::<TextOrObject<Part>>("[]").is_err());
        assert!(serde_json::from_str::<TextOrList<Part>>("3").is_err());
    }
}
