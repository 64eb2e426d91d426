//! A field's Avro type compiled once, when its version's schemas are built,
//! into what the direct writer ([`ser`](super::ser)) walks: nodes instead of
//! a `serde_json::Value` looked up by key at every write, with each union's
//! branch for every kind of value serde hands over resolved in advance.
//!
//! It mirrors the reading of a schema the writer used to do at every write:
//! a type it could not read (`Invalid`) or does not write (`Other`: `fixed`,
//! a named type defined elsewhere) makes the writer leave the value to the
//! JSON bridge, exactly as before.

use serde_json::{Map, Value};

/// A compiled Avro type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// Not a type the writer can read (an object without `"type"`, an array
    /// without `"items"`, ...): any value through it is left to the bridge.
    Invalid,
    Null,
    Boolean,
    /// `int`, with its logical type (a `date` or `time-millis` takes text).
    Int(Option<Box<str>>),
    /// `long`, with its logical type (a timestamp takes text).
    Long(Option<Box<str>>),
    Float,
    Double,
    Bytes,
    String,
    /// A type no value is written to directly (`fixed`, a named type, an
    /// unknown name): never picked, the bridge writes or refuses the value.
    Other,
    Union(Box<Union>),
    Array(Box<Node>),
    Map(Box<Node>),
    /// The symbols, `None` for one that is not a string (it matches nothing).
    Enum(Box<[Option<Box<str>>]>),
    Record(Box<Record>),
}

/// A union: its branches, and the one each kind of value goes to (`None`:
/// none takes it, or a branch the writer cannot read comes first).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Union {
    pub(crate) branches: Vec<Node>,
    pub(crate) null: Option<usize>,
    pub(crate) boolean: Option<usize>,
    /// An integer within `int`'s range: `int`, `long`, `float` or `double`.
    pub(crate) narrow: Option<usize>,
    /// A wider integer: `long`, `float` or `double`.
    pub(crate) wide: Option<usize>,
    pub(crate) float: Option<usize>,
    pub(crate) bytes: Option<usize>,
    pub(crate) array: Option<usize>,
    /// A variant (serde's one-entry map): a `map`.
    pub(crate) map: Option<usize>,
    /// A map or struct: a `map` or a record.
    pub(crate) entries: Option<usize>,
    /// The branches text may go to, in order: `string`, `bytes`, a logical
    /// `int` or `long`, an enum (when it holds the text), or one the writer
    /// cannot read (where the search stops).
    pub(crate) text: Vec<usize>,
}

/// A record's fields in the schema's order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    pub(crate) fields: Vec<(Box<str>, Node)>,
    /// A field without a name or a type, or a name twice: never written here.
    pub(crate) broken: bool,
}

impl Record {
    /// The position of field `name`, looked for at `hint` first (the value's
    /// fields mostly come in the schema's order).
    #[inline]
    pub(crate) fn position(&self, name: &str, hint: usize) -> Option<usize> {
        if let Some((field, _)) = self.fields.get(hint)
            && **field == *name
        {
            return Some(hint);
        }
        self.fields.iter().position(|(field, _)| **field == *name)
    }
}

impl Node {
    /// Compiles an Avro type (as in a schema's JSON).
    pub(crate) fn compile(avro: &Value) -> Node {
        match avro {
            Value::String(name) => primitive(name, None),
            Value::Array(branches) => Node::Union(Box::new(Union::compile(branches))),
            Value::Object(object) => compile_object(object),
            _ => Node::Invalid,
        }
    }

    /// Whether a union branch takes an integer (`narrow`: within `int`'s range).
    fn takes_integer(&self, narrow: bool) -> bool {
        matches!(self, Node::Long(_) | Node::Float | Node::Double)
            || (narrow && matches!(self, Node::Int(_)))
    }
}

fn compile_object(object: &Map<String, Value>) -> Node {
    let logical = object.get("logicalType").and_then(Value::as_str);
    match object.get("type") {
        Some(Value::String(kind)) => match kind.as_str() {
            "array" => object.get("items").map_or(Node::Invalid, |items| {
                Node::Array(Box::new(Node::compile(items)))
            }),
            "map" => object.get("values").map_or(Node::Invalid, |values| {
                Node::Map(Box::new(Node::compile(values)))
            }),
            "enum" => match object.get("symbols").and_then(Value::as_array) {
                Some(symbols) => Node::Enum(
                    symbols
                        .iter()
                        .map(|symbol| symbol.as_str().map(Box::from))
                        .collect(),
                ),
                None => Node::Invalid,
            },
            "record" | "error" => match object.get("fields").and_then(Value::as_array) {
                Some(fields) => Node::Record(Box::new(record(fields))),
                None => Node::Invalid,
            },
            other => primitive(other, logical),
        },
        Some(nested) => Node::compile(nested),
        None => Node::Invalid,
    }
}

fn primitive(name: &str, logical: Option<&str>) -> Node {
    match name {
        "null" => Node::Null,
        "boolean" => Node::Boolean,
        "int" => Node::Int(logical.map(Box::from)),
        "long" => Node::Long(logical.map(Box::from)),
        "float" => Node::Float,
        "double" => Node::Double,
        "bytes" => Node::Bytes,
        "string" => Node::String,
        _ => Node::Other,
    }
}

fn record(fields: &[Value]) -> Record {
    let mut broken = false;
    let mut compiled: Vec<(Box<str>, Node)> = Vec::with_capacity(fields.len());
    for field in fields {
        let name = field.get("name").and_then(Value::as_str);
        let avro = field.get("type");
        match (name, avro) {
            (Some(name), Some(avro)) if !compiled.iter().any(|(n, _)| **n == *name) => {
                compiled.push((name.into(), Node::compile(avro)));
            }
            _ => broken = true,
        }
    }
    Record {
        fields: compiled,
        broken,
    }
}

impl Union {
    fn compile(branches: &[Value]) -> Union {
        let branches: Vec<Node> = branches.iter().map(Node::compile).collect();
        // The first branch that takes the value; none past one the writer
        // cannot read.
        let first = |takes: &dyn Fn(&Node) -> bool| {
            for (index, branch) in branches.iter().enumerate() {
                if matches!(branch, Node::Invalid) {
                    return None;
                }
                if takes(branch) {
                    return Some(index);
                }
            }
            None
        };
        let null = first(&|n| matches!(n, Node::Null));
        let boolean = first(&|n| matches!(n, Node::Boolean));
        let narrow = first(&|n| n.takes_integer(true));
        let wide = first(&|n| n.takes_integer(false));
        let float = first(&|n| matches!(n, Node::Float | Node::Double));
        let bytes = first(&|n| matches!(n, Node::Bytes));
        let array = first(&|n| matches!(n, Node::Array(_)));
        let map = first(&|n| matches!(n, Node::Map(_)));
        let entries = first(&|n| matches!(n, Node::Map(_) | Node::Record(_)));
        let mut text = Vec::new();
        for (index, branch) in branches.iter().enumerate() {
            match branch {
                Node::String | Node::Bytes | Node::Int(Some(_)) | Node::Long(Some(_)) => {
                    // Text always fits here: no later branch is looked at.
                    text.push(index);
                    break;
                }
                Node::Invalid => {
                    text.push(index);
                    break;
                }
                Node::Enum(_) => text.push(index),
                _ => {}
            }
        }
        Union {
            branches,
            null,
            boolean,
            narrow,
            wide,
            float,
            bytes,
            array,
            map,
            entries,
            text,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn unions_resolve_each_kind_once() {
        let Node::Union(union) = Node::compile(&json!(["null", "int", "double",
            {"type": "enum", "name": "E", "symbols": ["a"]}, "string",
            {"type": "map", "values": "long"}]))
        else {
            panic!("a union");
        };
        assert_eq!(union.null, Some(0));
        assert_eq!(union.narrow, Some(1));
        assert_eq!(union.wide, Some(2));
        assert_eq!(union.float, Some(2));
        assert_eq!(union.text, vec![3, 4]);
        assert_eq!(union.map, Some(5));
        assert_eq!(union.entries, Some(5));
        assert_eq!(union.boolean, None);
        assert_eq!(union.array, None);
    }

    #[test]
    fn a_branch_that_cannot_be_read_stops_the_search() {
        let Node::Union(union) = Node::compile(&json!(["null", {"name": "x"}, "long", "string"]))
        else {
            panic!("a union");
        };
        assert_eq!(union.null, Some(0));
        assert_eq!(union.wide, None);
        assert_eq!(union.text, vec![1]);
    }

    #[test]
    fn types_compile_to_their_nodes() {
        assert_eq!(
            Node::compile(&json!({"type": "long", "logicalType": "timestamp-millis"})),
            Node::Long(Some("timestamp-millis".into()))
        );
        assert_eq!(
            Node::compile(&json!({"type": {"type": "array", "items": "bytes"}})),
            Node::Array(Box::new(Node::Bytes))
        );
        assert_eq!(
            Node::compile(&json!({"type": "fixed", "name": "F", "size": 2})),
            Node::Other
        );
        assert_eq!(Node::compile(&json!("Named")), Node::Other);
        assert_eq!(Node::compile(&json!({"type": "map"})), Node::Invalid);
        let Node::Record(record) = Node::compile(&json!({"type": "record", "name": "R",
            "fields": [{"name": "a", "type": "long"}, {"name": "b", "type": "string"}]}))
        else {
            panic!("a record");
        };
        assert!(!record.broken);
        assert_eq!(record.position("b", 0), Some(1));
        assert_eq!(record.position("a", 0), Some(0));
        assert_eq!(record.position("c", 0), None);
        let Node::Record(twice) = Node::compile(&json!({"type": "record", "name": "R",
            "fields": [{"name": "a", "type": "long"}, {"name": "a", "type": "string"}]}))
        else {
            panic!("a record");
        };
        assert!(twice.broken);
    }
}
