//! Reading a datum written with another schema (Avro's schema resolution):
//! the writer's schema parsed into [`WriterSchema`], matched field by field
//! against a version of the reading model ([`Plan`]). A writer field the
//! reader knows (by name, or by one of the reader field's other names, its
//! aliases) is read into it: straight by the field's own encoding when both
//! sides encode it alike, else through serde's JSON, which also does Avro's
//! promotions (int to long or double, a value into an `Option`, ...). A
//! writer field the reader does not know is skipped; a reader field the
//! writer does not have takes its default.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use super::codec::{AvroError, AvroReader};
use super::schema::{Built, PRIMITIVES};
use crate::error::Error;

/// How many records, arrays and maps deep a datum may nest: a writer's
/// schema may be recursive (a record holding itself through a union, an
/// array or a map), and a datum as deep as its bytes allow would overflow
/// the stack of whoever reads it.
pub(crate) const MAX_DEPTH: usize = 64;

/// The depth inside one more record, array or map, or the error past
/// [`MAX_DEPTH`] (at the reader's position).
fn deeper(depth: usize, r: &AvroReader<'_>) -> Result<usize, AvroError> {
    if depth >= MAX_DEPTH {
        Err(r.error(format!("nested deeper than {MAX_DEPTH} levels")))
    } else {
        Ok(depth + 1)
    }
}

/// One type of a writer's schema.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Null,
    Boolean,
    Int(Option<String>),
    Long(Option<String>),
    Float,
    Double,
    Bytes(Option<String>),
    String(Option<String>),
    Fixed(usize),
    Enum(Vec<String>),
    Array(usize),
    Map(usize),
    Union(Vec<usize>),
    /// Fields: name, aliases, type, whether it has a default.
    Record(Vec<(String, Vec<String>, usize, bool)>),
    /// A named type being parsed (a record's own fields may name it).
    Pending,
}

/// A writer's schema, parsed: what a datum written with it holds, and how
/// to read or skip each part.
///
/// # Examples
///
/// ```
/// use outbox::Outboxed;
/// use outbox::avro::WriterSchema;
///
/// #[derive(Debug, PartialEq, Outboxed)]
/// #[outbox(topic = "accounts", route = "users", versions = [1, 2], avro)]
/// struct User {
///     id: i64,
///     #[outbox(rename(v1 = "mail"))]
///     email: String,
///     #[outbox(since = 2, default)]
///     tags: Vec<String>,
/// }
///
/// // A producer on version 2; a consumer reading it as version 1.
/// let user = User { id: 1, email: "a@b.c".into(), tags: vec!["x".into()] };
/// let mut datum = Vec::new();
/// user.write_avro(2, &mut datum)?;
/// let writer = WriterSchema::parse(User::avro_schema(2)?)?;
/// let read = User::read_avro_from(&writer, 1, &datum)?;
/// assert_eq!(read, User { id: 1, email: "a@b.c".into(), tags: vec![] });
/// # Ok::<(), outbox::Error>(())
/// ```
#[derive(Debug)]
pub struct WriterSchema {
    nodes: Vec<Node>,
    root: usize,
    plans: Mutex<HashMap<(TypeId, u32), Arc<Plan>>>,
}

/// How to read a writer's record into one version of a model.
#[doc(hidden)]
#[derive(Debug)]
pub struct Plan {
    /// In the writer's field order.
    pub steps: Vec<Step>,
}

/// What to do with one field of the writer's record.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Read it into the reader's field `field` (its index in the version),
    /// by the field's own encoding (`direct`) or through JSON from `node`.
    Field {
        field: usize,
        direct: bool,
        node: usize,
    },
    /// Not the reader's: read past it.
    Skip(usize),
}

impl WriterSchema {
    /// Parses a writer's schema (the registry's text).
    ///
    /// # Errors
    ///
    /// [`Error::Schema`] when the text is not JSON, not a record, or not a
    /// valid Avro schema (an unknown named type, a union in a union, ...).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let invalid = |reason: String| Error::Schema {
            model: "the writer's schema",
            version: 0,
            reason,
        };
        let value: Value =
            serde_json::from_str(text).map_err(|e| invalid(format!("not JSON: {e}")))?;
        let mut parser = Parser::default();
        let root = parser.node(&value, "", 0).map_err(invalid)?;
        parser.finite().map_err(invalid)?;
        if !matches!(parser.nodes[root], Node::Record(_)) {
            return Err(invalid("a message's schema must be a record".into()));
        }
        Ok(WriterSchema {
            nodes: parser.nodes,
            root,
            plans: Mutex::new(HashMap::new()),
        })
    }

    /// Any Avro type (not only a record), for reading one value of it back
    /// with [`read_root_json`](WriterSchema::read_root_json).
    pub(crate) fn of_type(avro: &Value) -> Result<Self, String> {
        let mut parser = Parser::default();
        let root = parser.node(avro, "", 0)?;
        parser.finite()?;
        Ok(WriterSchema {
            nodes: parser.nodes,
            root,
            plans: Mutex::new(HashMap::new()),
        })
    }

    /// Reads one value of the whole schema as JSON (see [`read_json`](WriterSchema::read_json)).
    pub(crate) fn read_root_json(
        &self,
        with: bool,
        r: &mut AvroReader<'_>,
    ) -> Result<Value, AvroError> {
        self.read_json_at(self.root, with, r, 0)
    }

    /// The plan of model `M`'s `version`, made once per writer schema:
    /// `fields` holds, per field of the version in order, its name there and
    /// then its names in other versions (aliases).
    #[doc(hidden)]
    pub fn plan<M: 'static>(
        &self,
        version: u32,
        model: &'static str,
        built: &Built,
        fields: &[&[&str]],
    ) -> Result<Arc<Plan>, Error> {
        let key = (TypeId::of::<M>(), version);
        if let Some(plan) = self
            .plans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(Arc::clone(plan));
        }
        let plan = Arc::new(self.make_plan(version, model, built, fields)?);
        self.plans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, Arc::clone(&plan));
        Ok(plan)
    }

    fn make_plan(
        &self,
        version: u32,
        model: &'static str,
        built: &Built,
        fields: &[&[&str]],
    ) -> Result<Plan, Error> {
        let Node::Record(writer_fields) = &self.nodes[self.root] else {
            unreachable!("parse accepts records only")
        };
        let mut read = vec![false; fields.len()];
        let mut steps = Vec::with_capacity(writer_fields.len());
        for (name, aliases, node, _) in writer_fields {
            let found = fields
                .iter()
                .position(|names| same_field(name, aliases, names.iter().copied()));
            match found {
                Some(index) if !read[index] => {
                    read[index] = true;
                    let expected = built.fields.get(index).map(|f| &f.avro);
                    let direct = expected.is_some_and(|e| self.encodes_as(*node, e));
                    steps.push(Step::Field {
                        field: index,
                        direct,
                        node: *node,
                    });
                }
                _ => steps.push(Step::Skip(*node)),
            }
        }
        let missing: Vec<&str> = fields
            .iter()
            .zip(&read)
            .enumerate()
            .filter(|(index, (_, read))| {
                !**read && !built.fields.get(*index).is_some_and(|f| f.has_default)
            })
            .map(|(_, (names, _))| names.first().copied().unwrap_or(""))
            .collect();
        if !missing.is_empty() {
            return Err(Error::Avro {
                model,
                version,
                reason: format!(
                    "the writer's schema has no field {} and the reader has no default for it",
                    missing
                        .iter()
                        .map(|m| format!("`{m}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        Ok(Plan { steps })
    }

    /// Whether a value of `node` is encoded as the reader's type `expected`
    /// (a schema as JSON) encodes it: then the reader's own decoding reads it.
    fn encodes_as(&self, node: usize, expected: &Value) -> bool {
        let mut parser = Parser::default();
        let Ok(reader) = parser.node(expected, "", 0) else {
            return false;
        };
        same(&self.nodes, node, &parser.nodes, reader, 0)
    }

    /// Reads past a value of `node`, a field of the root record.
    #[doc(hidden)]
    pub fn skip(&self, node: usize, r: &mut AvroReader<'_>) -> Result<(), AvroError> {
        self.skip_at(node, r, 1)
    }

    /// [`skip`](Self::skip) `depth` records, arrays or maps deep.
    fn skip_at(&self, node: usize, r: &mut AvroReader<'_>, depth: usize) -> Result<(), AvroError> {
        match &self.nodes[node] {
            Node::Null | Node::Pending => Ok(()),
            Node::Boolean => r.read_bool().map(drop),
            Node::Int(_) | Node::Long(_) | Node::Enum(_) => r.read_long().map(drop),
            Node::Float => r.read_float().map(drop),
            Node::Double => r.read_double().map(drop),
            Node::Bytes(_) | Node::String(_) => r.read_bytes().map(drop),
            Node::Fixed(size) => r.read_fixed(*size).map(drop),
            Node::Array(items) => {
                let (items, depth) = (*items, deeper(depth, r)?);
                r.read_blocks(self.min_bytes(items), |r| self.skip_at(items, r, depth))
            }
            Node::Map(values) => {
                let (values, depth) = (*values, deeper(depth, r)?);
                r.read_blocks(1, |r| {
                    r.read_bytes()?;
                    self.skip_at(values, r, depth)
                })
            }
            Node::Union(branches) => {
                // Not a level: a union's branch is never a union.
                let branch = self.branch(branches, r)?;
                self.skip_at(branch, r, depth)
            }
            Node::Record(fields) => {
                let depth = deeper(depth, r)?;
                fields
                    .iter()
                    .try_for_each(|(_, _, f, _)| self.skip_at(*f, r, depth))
            }
        }
    }

    fn min_bytes(&self, node: usize) -> usize {
        usize::from(!matches!(self.nodes[node], Node::Null | Node::Pending))
    }

    fn branch(&self, branches: &[usize], r: &mut AvroReader<'_>) -> Result<usize, AvroError> {
        let at = r.clone();
        let index = r.read_long()?;
        usize::try_from(index)
            .ok()
            .and_then(|i| branches.get(i).copied())
            .ok_or_else(|| at.error(format!("union branch {index} of {}", branches.len())))
    }

    /// Reads a value of `node`, a field of the root record, as the JSON
    /// serde reads the reader's field from (`with`: the field has a `with`
    /// module, so logical types stay numbers). A datum nested deeper than
    /// 64 records, arrays or maps (`MAX_DEPTH`) is an error.
    #[doc(hidden)]
    pub fn read_json(
        &self,
        node: usize,
        with: bool,
        r: &mut AvroReader<'_>,
    ) -> Result<Value, AvroError> {
        self.read_json_at(node, with, r, 1)
    }

    /// [`read_json`](Self::read_json) `depth` records, arrays or maps deep.
    fn read_json_at(
        &self,
        node: usize,
        with: bool,
        r: &mut AvroReader<'_>,
        depth: usize,
    ) -> Result<Value, AvroError> {
        Ok(match &self.nodes[node] {
            Node::Null | Node::Pending => Value::Null,
            Node::Boolean => Value::Bool(r.read_bool()?),
            Node::Int(logical) | Node::Long(logical) => {
                let at = r.clone();
                let n = match &self.nodes[node] {
                    Node::Int(_) => i64::from(r.read_int()?),
                    _ => r.read_long()?,
                };
                match logical.as_deref().filter(|_| !with) {
                    Some(logical) => {
                        super::schema::from_temporal(logical, n).map_err(|e| at.error(e))?
                    }
                    None => Value::from(n),
                }
            }
            Node::Float => Value::from(f64::from(r.read_float()?)),
            Node::Double => Value::from(r.read_double()?),
            Node::Bytes(_) => Value::from(r.read_bytes()?.to_vec()),
            Node::String(_) => Value::from(r.read_str()?),
            Node::Fixed(size) => Value::from(r.read_fixed(*size)?.to_vec()),
            Node::Enum(symbols) => {
                let at = r.clone();
                let index = r.read_long()?;
                let symbol = usize::try_from(index).ok().and_then(|i| symbols.get(i));
                Value::from(
                    symbol
                        .ok_or_else(|| at.error(format!("enum symbol {index} does not exist")))?
                        .as_str(),
                )
            }
            Node::Array(items) => {
                let (items, depth) = (*items, deeper(depth, r)?);
                let mut values = Vec::new();
                r.read_blocks(self.min_bytes(items), |r| {
                    values.push(self.read_json_at(items, with, r, depth)?);
                    Ok(())
                })?;
                Value::Array(values)
            }
            Node::Map(values) => {
                let (values, depth) = (*values, deeper(depth, r)?);
                let mut entries = Map::new();
                r.read_blocks(1, |r| {
                    let key = r.read_str()?.to_owned();
                    entries.insert(key, self.read_json_at(values, with, r, depth)?);
                    Ok(())
                })?;
                Value::Object(entries)
            }
            Node::Union(branches) => {
                // Not a level: a union's branch is never a union.
                let branch = self.branch(branches, r)?;
                self.read_json_at(branch, with, r, depth)?
            }
            Node::Record(fields) => {
                let depth = deeper(depth, r)?;
                let mut object = Map::new();
                for (name, _, field, _) in fields {
                    object.insert(name.clone(), self.read_json_at(*field, with, r, depth)?);
                }
                Value::Object(object)
            }
        })
    }
}

/// What a reader's schema makes of a writer's, field by field: the
/// static side of [`read_avro_from`](crate::Outboxed::read_avro_from), for
/// checks before a deploy (`outbox schemas check --against`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadCheck {
    /// Reader fields the writer does not send: they take their default.
    pub defaulted: Vec<String>,
    /// Writer fields the reader does not know: skipped.
    pub ignored: Vec<String>,
    /// Why some records cannot be read: a reader field without default the
    /// writer lacks, types that disagree (each names its field).
    pub problems: Vec<String>,
}

impl ReadCheck {
    /// Whether every record of the writer's schema can be read.
    pub fn readable(&self) -> bool {
        self.problems.is_empty()
    }
}

impl WriterSchema {
    /// Checks whether records of this (the writer's) schema can be read
    /// with `reader`, by the same matching as [`read_avro_from`]: names, the
    /// reader's aliases and the writer's; Avro's promotions (int to long,
    /// float or double; long to float or double; float to double; string and
    /// bytes), a value into a union holding its type, enums whose writer
    /// symbols the reader knows.
    ///
    /// [`read_avro_from`]: crate::Outboxed::read_avro_from
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox::avro::WriterSchema;
    ///
    /// let v1 = WriterSchema::parse(r#"{"type": "record", "name": "U", "fields": [
    ///     {"name": "id", "type": "int"}, {"name": "mail", "type": "string"}]}"#)?;
    /// let v2 = WriterSchema::parse(r#"{"type": "record", "name": "U", "fields": [
    ///     {"name": "id", "type": "long"}, {"name": "email", "type": "string", "aliases": ["mail"]},
    ///     {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []}]}"#)?;
    /// let check = v1.check_read(&v2);
    /// assert!(check.readable());
    /// assert_eq!(check.defaulted, ["tags"]);
    /// let back = v2.check_read(&v1);
    /// assert_eq!(back.problems, ["field `id`: a long cannot be read as an int"]);
    /// # Ok::<(), outbox::Error>(())
    /// ```
    pub fn check_read(&self, reader: &WriterSchema) -> ReadCheck {
        let mut check = ReadCheck::default();
        let (Node::Record(w), Node::Record(r)) =
            (&self.nodes[self.root], &reader.nodes[reader.root])
        else {
            check.problems.push("both schemas must be records".into());
            return check;
        };
        let mut compared = Reads::new(&self.nodes, &reader.nodes);
        let mut read = vec![false; r.len()];
        for (name, aliases, node, _) in w {
            let found = r.iter().position(|(r_name, r_aliases, _, _)| {
                let reader_names = std::iter::once(r_name).chain(r_aliases);
                same_field(name, aliases, reader_names.map(String::as_str))
            });
            match found {
                Some(index) if !read[index] => {
                    read[index] = true;
                    let (r_name, _, r_node, _) = &r[index];
                    if let Err(why) = compared.reads(*node, *r_node, 1) {
                        check.problems.push(format!("field `{r_name}`: {why}"));
                    }
                }
                _ => check.ignored.push(name.clone()),
            }
        }
        for ((name, _, _, has_default), read) in r.iter().zip(read) {
            match (read, has_default) {
                (true, _) => {}
                (false, true) => check.defaulted.push(name.clone()),
                (false, false) => check.problems.push(format!(
                    "field `{name}`: the writer does not send it and the reader has no default"
                )),
            }
        }
        check
    }
}

/// Whether a writer's field (its name and aliases) is the reader's field of
/// these names (its name and aliases): by the reader's names, as Avro
/// resolves, and by the writer's aliases too, since a derived schema lists
/// every name a field had (a consumer built before a rename finds it).
fn same_field<'r>(
    name: &str,
    aliases: &[String],
    mut reader: impl Iterator<Item = &'r str>,
) -> bool {
    reader.any(|n| n == name || aliases.iter().any(|a| a == n))
}

/// The name of a type, for messages.
fn kind(nodes: &[Node], node: usize) -> String {
    match &nodes[node] {
        Node::Null => "null".into(),
        Node::Boolean => "boolean".into(),
        Node::Int(l) | Node::Long(l) | Node::Bytes(l) | Node::String(l) => {
            let base = match &nodes[node] {
                Node::Int(_) => "int",
                Node::Long(_) => "long",
                Node::Bytes(_) => "bytes",
                _ => "string",
            };
            match l {
                Some(logical) => format!("{base} ({logical})"),
                None => base.into(),
            }
        }
        Node::Float => "float".into(),
        Node::Double => "double".into(),
        Node::Fixed(n) => format!("fixed({n})"),
        Node::Enum(_) => "enum".into(),
        Node::Array(_) => "array".into(),
        Node::Map(_) => "map".into(),
        Node::Union(_) => "union".into(),
        Node::Record(_) => "record".into(),
        Node::Pending => "a type being defined".into(),
    }
}

fn article(kind: &str) -> &'static str {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) && !kind.starts_with("union") {
        "an"
    } else {
        "a"
    }
}

/// Whether values of writer types read as reader types, else why not:
/// each pair of types once (schemas may be recursive, and share named
/// types), a pair being compared taken to read (a recursive type reads as
/// another if nothing else tells them apart).
struct Reads<'a> {
    w: &'a [Node],
    r: &'a [Node],
    /// Outcomes, in the order found.
    known: HashMap<(usize, usize), Result<(), String>>,
    order: Vec<(usize, usize)>,
    /// The pairs being compared.
    open: std::collections::HashSet<(usize, usize)>,
}

impl<'a> Reads<'a> {
    fn new(w: &'a [Node], r: &'a [Node]) -> Self {
        Reads {
            w,
            r,
            known: HashMap::new(),
            order: Vec::new(),
            open: std::collections::HashSet::new(),
        }
    }

    /// Whether a value of writer type `x` reads as reader type `y`, `depth`
    /// records, arrays or maps deep, else why not.
    fn reads(&mut self, x: usize, y: usize, depth: usize) -> Result<(), String> {
        if let Some(known) = self.known.get(&(x, y)) {
            return known.clone();
        }
        if !self.open.insert((x, y)) {
            return Ok(());
        }
        let since = self.order.len();
        let outcome = self.compare(x, y, depth);
        self.open.remove(&(x, y));
        if outcome.is_err() {
            // Pairs found to read since may have relied on this one
            // reading: forget them (failures stand: assuming more reads
            // never makes a pair fail).
            for pair in self.order.split_off(since) {
                if self.known.get(&pair).is_some_and(Result::is_err) {
                    self.order.push(pair);
                } else {
                    self.known.remove(&pair);
                }
            }
        }
        self.known.insert((x, y), outcome.clone());
        self.order.push((x, y));
        outcome
    }

    fn compare(&mut self, x: usize, y: usize, depth: usize) -> Result<(), String> {
        let (w, r) = (self.w, self.r);
        let deeper = || {
            if depth >= MAX_DEPTH {
                Err(format!("the schemas nest deeper than {MAX_DEPTH} levels"))
            } else {
                Ok(depth + 1)
            }
        };
        let cannot = || {
            let (from, to) = (kind(w, x), kind(r, y));
            Err(format!(
                "{} {from} cannot be read as {} {to}",
                article(&from),
                article(&to)
            ))
        };
        match (&w[x], &r[y]) {
            (Node::Union(branches), _) => {
                for branch in branches {
                    self.reads(*branch, y, depth)
                        .map_err(|why| match &w[*branch] {
                            Node::Null => {
                                "the writer may send null, which the reader's type does not hold"
                                    .to_owned()
                            }
                            _ => why,
                        })?;
                }
                Ok(())
            }
            (_, Node::Union(branches)) => {
                if branches.iter().any(|b| self.reads(x, *b, depth).is_ok()) {
                    Ok(())
                } else {
                    cannot()
                }
            }
            (Node::Null, Node::Null) | (Node::Boolean, Node::Boolean) => Ok(()),
            (Node::Int(_), Node::Int(_) | Node::Long(_) | Node::Float | Node::Double) => Ok(()),
            (Node::Long(_), Node::Long(_) | Node::Float | Node::Double) => Ok(()),
            (Node::Float, Node::Float | Node::Double) | (Node::Double, Node::Double) => Ok(()),
            (Node::String(_) | Node::Bytes(_), Node::String(_) | Node::Bytes(_)) => Ok(()),
            (Node::Enum(_), Node::String(_)) => Ok(()),
            (Node::Fixed(a), Node::Fixed(b)) if a == b => Ok(()),
            (Node::Enum(ws), Node::Enum(rs)) => {
                let unknown: Vec<&String> = ws.iter().filter(|s| !rs.contains(s)).collect();
                if unknown.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "the reader's enum lacks the writer's symbols {unknown:?}"
                    ))
                }
            }
            (Node::Array(i), Node::Array(j)) | (Node::Map(i), Node::Map(j)) => {
                let depth = deeper()?;
                self.reads(*i, *j, depth)
            }
            (Node::Record(wf), Node::Record(rf)) => {
                let depth = deeper()?;
                for (name, _, node, _) in wf {
                    if let Some((_, _, r_node, _)) =
                        rf.iter().find(|(n, a, _, _)| n == name || a.contains(name))
                    {
                        self.reads(*node, *r_node, depth)
                            .map_err(|why| format!("`{name}`: {why}"))?;
                    }
                }
                match rf.iter().find(|(n, a, _, d)| {
                    !d && !wf.iter().any(|(m, _, _, _)| m == n || a.contains(m))
                }) {
                    Some((n, _, _, _)) => Err(format!(
                        "the writer's record lacks `{n}`, which has no default"
                    )),
                    None => Ok(()),
                }
            }
            _ => cannot(),
        }
    }
}

/// Whether two types encode alike: same kinds, same logical types (a
/// timestamp in millis is not one in micros), unions with the same branches
/// in the same order, enums with the same symbols.
fn same(a: &[Node], x: usize, b: &[Node], y: usize, depth: usize) -> bool {
    if depth > 32 {
        return false;
    }
    let same_at = |x: usize, y: usize| same(a, x, b, y, depth + 1);
    match (&a[x], &b[y]) {
        (Node::Array(i), Node::Array(j)) | (Node::Map(i), Node::Map(j)) => same_at(*i, *j),
        (Node::Union(i), Node::Union(j)) => {
            i.len() == j.len() && i.iter().zip(j).all(|(i, j)| same_at(*i, *j))
        }
        (Node::Record(i), Node::Record(j)) => {
            i.len() == j.len()
                && i.iter()
                    .zip(j)
                    .all(|((n, _, i, _), (m, _, j, _))| n == m && same_at(*i, *j))
        }
        (Node::Pending, _) | (_, Node::Pending) => false,
        (left, right) => left == right,
    }
}

/// Turns schema JSON into nodes, registering named types by full name.
#[derive(Default)]
struct Parser {
    nodes: Vec<Node>,
    named: HashMap<String, usize>,
}

impl Parser {
    fn push(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn full_name(name: &str, namespace: &str) -> String {
        if name.contains('.') || namespace.is_empty() {
            name.to_owned()
        } else {
            format!("{namespace}.{name}")
        }
    }

    fn node(&mut self, value: &Value, namespace: &str, depth: usize) -> Result<usize, String> {
        if depth > 64 {
            return Err("the schema nests deeper than 64 levels".into());
        }
        match value {
            Value::String(name) => self.named_or_primitive(name, None, namespace),
            Value::Array(branches) => {
                let mut nodes = Vec::with_capacity(branches.len());
                for branch in branches {
                    let node = self.node(branch, namespace, depth + 1)?;
                    if matches!(self.nodes[node], Node::Union(_)) {
                        return Err("a union directly inside a union".into());
                    }
                    nodes.push(node);
                }
                Ok(self.push(Node::Union(nodes)))
            }
            Value::Object(object) => {
                let kind = object
                    .get("type")
                    .ok_or_else(|| format!("a type without \"type\": {value}"))?;
                let logical = object.get("logicalType").and_then(Value::as_str);
                let Value::String(kind) = kind else {
                    return self.node(kind, namespace, depth + 1);
                };
                let name = object.get("name").and_then(Value::as_str);
                let namespace = object
                    .get("namespace")
                    .and_then(Value::as_str)
                    .unwrap_or(namespace)
                    .to_owned();
                let full = name.map(|n| Self::full_name(n, &namespace));
                // A named type's own namespace is its full name's.
                let inner = full
                    .as_deref()
                    .and_then(|f| f.rsplit_once('.').map(|(ns, _)| ns.to_owned()))
                    .unwrap_or_else(|| namespace.clone());
                match kind.as_str() {
                    "record" | "error" => {
                        let full = full.ok_or("a record without a name")?;
                        let index = self.push(Node::Pending);
                        self.named.insert(full, index);
                        let fields = object
                            .get("fields")
                            .and_then(Value::as_array)
                            .ok_or("a record without \"fields\"")?;
                        let mut nodes = Vec::with_capacity(fields.len());
                        for field in fields {
                            let name = field
                                .get("name")
                                .and_then(Value::as_str)
                                .ok_or("a record field without a name")?;
                            let kind = field
                                .get("type")
                                .ok_or_else(|| format!("field `{name}` has no type"))?;
                            let aliases = field
                                .get("aliases")
                                .and_then(Value::as_array)
                                .into_iter()
                                .flatten()
                                .filter_map(|a| a.as_str().map(str::to_owned))
                                .collect();
                            let node = self.node(kind, &inner, depth + 1)?;
                            let has_default = field.get("default").is_some();
                            nodes.push((name.to_owned(), aliases, node, has_default));
                        }
                        self.nodes[index] = Node::Record(nodes);
                        Ok(index)
                    }
                    "enum" => {
                        let symbols = object
                            .get("symbols")
                            .and_then(Value::as_array)
                            .ok_or("an enum without \"symbols\"")?
                            .iter()
                            .map(|s| {
                                s.as_str()
                                    .map(str::to_owned)
                                    .ok_or("an enum symbol that is not a string")
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        let index = self.push(Node::Enum(symbols));
                        if let Some(full) = full {
                            self.named.insert(full, index);
                        }
                        Ok(index)
                    }
                    "fixed" => {
                        let size = object
                            .get("size")
                            .and_then(Value::as_u64)
                            .and_then(|s| usize::try_from(s).ok())
                            .ok_or("a fixed without a \"size\"")?;
                        let index = self.push(Node::Fixed(size));
                        if let Some(full) = full {
                            self.named.insert(full, index);
                        }
                        Ok(index)
                    }
                    "array" => {
                        let items = object.get("items").ok_or("an array without \"items\"")?;
                        let items = self.node(items, &namespace, depth + 1)?;
                        Ok(self.push(Node::Array(items)))
                    }
                    "map" => {
                        let values = object.get("values").ok_or("a map without \"values\"")?;
                        let values = self.node(values, &namespace, depth + 1)?;
                        Ok(self.push(Node::Map(values)))
                    }
                    other => self.named_or_primitive(other, logical, &namespace),
                }
            }
            other => Err(format!("{other} is not an Avro type")),
        }
    }

    /// Refuses a record with no finite value: one that holds itself (or a
    /// record that does) other than through a union with another branch, an
    /// array or a map (which may stay empty). Reading one would recurse
    /// without reading a byte.
    fn finite(&self) -> Result<(), String> {
        // Which types have a finite value, from the ones that plainly do:
        // a record once all its fields have, a union once one branch has.
        let mut parents: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len()];
        let mut waiting = vec![0usize; self.nodes.len()];
        let mut finite = vec![false; self.nodes.len()];
        let mut queue = Vec::new();
        for (index, node) in self.nodes.iter().enumerate() {
            match node {
                Node::Record(fields) => {
                    waiting[index] = fields.len();
                    for (_, _, field, _) in fields {
                        parents[*field].push(index);
                    }
                }
                Node::Union(branches) => {
                    waiting[index] = usize::from(!branches.is_empty());
                    for branch in branches {
                        parents[*branch].push(index);
                    }
                }
                _ => {}
            }
            if waiting[index] == 0 && !matches!(node, Node::Pending) {
                finite[index] = true;
                queue.push(index);
            }
        }
        while let Some(child) = queue.pop() {
            for &parent in &parents[child] {
                if !finite[parent] {
                    waiting[parent] -= 1;
                    if waiting[parent] == 0 {
                        finite[parent] = true;
                        queue.push(parent);
                    }
                }
            }
        }
        // One is: walk down its types without a finite value, to the
        // record found twice on the way (a union's branch is a record).
        let Some(mut at) = (0..self.nodes.len())
            .find(|i| !finite[*i] && matches!(self.nodes[*i], Node::Record(_)))
        else {
            return Ok(());
        };
        let mut seen = vec![false; self.nodes.len()];
        while !seen[at] || !matches!(self.nodes[at], Node::Record(_)) {
            seen[at] = true;
            let next = match &self.nodes[at] {
                Node::Record(fields) => fields.iter().map(|f| f.2).find(|c| !finite[*c]),
                Node::Union(branches) => branches.iter().copied().find(|c| !finite[*c]),
                _ => None,
            };
            match next {
                Some(next) => at = next,
                None => break,
            }
        }
        let name = self
            .named
            .iter()
            .find(|(_, index)| **index == at)
            .map_or("", |(name, _)| name.as_str());
        Err(format!(
            "record `{name}` holds itself other than through a union, an array or a map: \
             none of its values is finite"
        ))
    }

    fn named_or_primitive(
        &mut self,
        name: &str,
        logical: Option<&str>,
        namespace: &str,
    ) -> Result<usize, String> {
        let logical = logical.map(str::to_owned);
        let node = match name {
            "null" => Node::Null,
            "boolean" => Node::Boolean,
            "int" => Node::Int(logical),
            "long" => Node::Long(logical),
            "float" => Node::Float,
            "double" => Node::Double,
            "bytes" => Node::Bytes(logical),
            "string" => Node::String(logical),
            _ => {
                let found = self
                    .named
                    .get(&Self::full_name(name, namespace))
                    .or_else(|| self.named.get(name));
                return found
                    .copied()
                    .ok_or_else(|| format!("unknown type `{name}`"));
            }
        };
        debug_assert!(PRIMITIVES.contains(&name));
        Ok(self.push(node))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::*;
    use crate::avro::codec::write_long;

    /// A linked list: each node a value and maybe the next.
    const LIST: &str = r#"{"type": "record", "name": "N", "namespace": "t", "fields": [
        {"name": "v", "type": "long"}, {"name": "next", "type": ["null", "N"]}]}"#;

    /// A tree: each node a value and its children.
    const TREE: &str = r#"{"type": "record", "name": "T", "fields": [
        {"name": "v", "type": "long"},
        {"name": "kids", "type": {"type": "array", "items": "T"}},
        {"name": "named", "type": {"type": "map", "values": "T"}}]}"#;

    /// A datum of [`LIST`] of `values`.
    fn list(values: impl IntoIterator<Item = i64>) -> Vec<u8> {
        let mut datum = Vec::new();
        let mut first = true;
        for v in values {
            if !first {
                write_long(&mut datum, 1); // the "N" branch
            }
            first = false;
            write_long(&mut datum, v);
        }
        write_long(&mut datum, 0); // the "null" branch
        datum
    }

    /// Runs `f` on a thread of a 2 MB stack: a read recursing without limit
    /// overflows it (and aborts the test process).
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    fn next_field(writer: &WriterSchema) -> usize {
        let Node::Record(fields) = &writer.nodes[writer.root] else {
            unreachable!()
        };
        fields[1].2
    }

    #[test]
    fn a_record_holding_itself_through_a_union_reads() {
        let writer = WriterSchema::parse(LIST).unwrap();
        let datum = list([1, 2, 3]);
        let mut r = AvroReader::new(&datum);
        assert_eq!(
            writer.read_root_json(false, &mut r).unwrap(),
            json!({"v": 1, "next": {"v": 2, "next": {"v": 3, "next": null}}})
        );
        r.finish().unwrap();
        // Skipped as a writer's field the reader does not know.
        let mut r = AvroReader::new(&datum[1..]);
        writer.skip(next_field(&writer), &mut r).unwrap();
        r.finish().unwrap();
        // As deep as allowed: the root and 63 more.
        let deepest = list(0..MAX_DEPTH as i64);
        let mut r = AvroReader::new(&deepest);
        writer.read_root_json(false, &mut r).unwrap();
        r.finish().unwrap();
        let too_deep = list(0..=MAX_DEPTH as i64);
        let error = writer
            .read_root_json(false, &mut AvroReader::new(&too_deep))
            .unwrap_err();
        assert_eq!(error.reason, "nested deeper than 64 levels");
    }

    #[test]
    fn a_deep_datum_is_an_error_not_a_stack_overflow() {
        on_small_stack(|| {
            let writer = WriterSchema::parse(LIST).unwrap();
            let datum = list(0..100_000);
            let error = writer
                .read_root_json(false, &mut AvroReader::new(&datum))
                .unwrap_err();
            assert_eq!(error.reason, "nested deeper than 64 levels");
            let field = next_field(&writer);
            for error in [
                writer.skip(field, &mut AvroReader::new(&datum[1..])),
                writer
                    .read_json(field, false, &mut AvroReader::new(&datum[1..]))
                    .map(drop),
            ] {
                assert_eq!(error.unwrap_err().reason, "nested deeper than 64 levels");
            }
            // A consumer's JSON view of it: none, rather than an abort.
            let mut payloads = crate::Payloads::avro(1, 42, datum).unwrap();
            payloads.set_writer_schema(Arc::new(writer));
            assert_eq!(payloads.get(1), None);

            // Through arrays and maps: each item a tree of one child.
            let writer = WriterSchema::parse(TREE).unwrap();
            for in_map in [false, true] {
                let mut datum = Vec::new();
                for _ in 0..100_000 {
                    write_long(&mut datum, 0); // v
                    if in_map {
                        write_long(&mut datum, 0); // no kids
                        write_long(&mut datum, 1); // one entry
                        crate::avro::codec::write_bytes(&mut datum, b"k");
                    } else {
                        write_long(&mut datum, 1); // one kid
                    }
                }
                let mut r = AvroReader::new(&datum);
                let error = writer.read_root_json(false, &mut r).unwrap_err();
                assert_eq!(error.reason, "nested deeper than 64 levels");
                let Node::Record(fields) = &writer.nodes[writer.root] else {
                    unreachable!()
                };
                let field = fields[if in_map { 2 } else { 1 }].2;
                let rest = &datum[if in_map { 2 } else { 1 }..];
                let error = writer.skip(field, &mut AvroReader::new(rest)).unwrap_err();
                assert_eq!(error.reason, "nested deeper than 64 levels");
            }
        });
    }

    #[test]
    fn a_record_holding_itself_otherwise_is_refused() {
        for schema in [
            // Straight.
            r#"{"type": "record", "name": "N", "fields": [{"name": "next", "type": "N"}]}"#,
            // Through a union of itself alone.
            r#"{"type": "record", "name": "N", "fields": [{"name": "next", "type": ["N"]}]}"#,
            // Through another record.
            r#"{"type": "record", "name": "N", "fields": [{"name": "m", "type":
                {"type": "record", "name": "M", "fields": [{"name": "n", "type": "N"}]}}]}"#,
            // Inside a finite record.
            r#"{"type": "record", "name": "R", "fields": [
                {"name": "ok", "type": ["null", "R"]},
                {"name": "n", "type": {"type": "record", "name": "N", "fields": [
                    {"name": "v", "type": "int"}, {"name": "next", "type": "N"}]}}]}"#,
        ] {
            let error = WriterSchema::parse(schema).unwrap_err().to_string();
            assert!(
                error.contains("holds itself other than through a union, an array or a map"),
                "{error}"
            );
            assert!(error.contains("record `N`"), "{error}");
        }
        for finite in [LIST, TREE] {
            WriterSchema::parse(finite).unwrap();
        }
    }

    #[test]
    fn checking_recursive_schemas_ends() {
        let list = WriterSchema::parse(LIST).unwrap();
        let check = list.check_read(&list);
        assert!(check.readable(), "{check:?}");
        let tree = WriterSchema::parse(TREE).unwrap();
        assert!(tree.check_read(&tree).readable());
        let problems = list.check_read(&tree).problems;
        assert!(!problems.is_empty());

        // A long read as an int, one level down.
        let narrower = WriterSchema::parse(&LIST.replace(r#""long""#, r#""int""#)).unwrap();
        assert_eq!(
            list.check_read(&narrower).problems,
            [
                "field `v`: a long cannot be read as an int",
                "field `next`: a record cannot be read as a union"
            ]
        );
        assert!(narrower.check_read(&list).readable());

        // Many recursive fields, and a difference deep down: each pair of
        // types compared once, not once per path to it.
        let wide = |last: &str| {
            let fields: Vec<String> = (0..12)
                .map(|i| format!(r#"{{"name": "f{i}", "type": ["null", "W"]}}"#))
                .chain([format!(
                    r#"{{"name": "leaf", "type": {{"type": "record", "name": "L", "fields":
                        [{{"name": "x", "type": "{last}"}},
                         {{"name": "back", "type": {{"type": "array", "items": "W"}}}}]}}}}"#
                )])
                .collect();
            WriterSchema::parse(&format!(
                r#"{{"type": "record", "name": "W", "fields": [{}]}}"#,
                fields.join(", ")
            ))
            .unwrap()
        };
        let started = Instant::now();
        assert!(wide("int").check_read(&wide("long")).readable());
        let problems = wide("long").check_read(&wide("int")).problems;
        assert_eq!(problems.len(), 13, "{problems:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
