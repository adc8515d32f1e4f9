//! A positioned YAML tree built from `saphyr-parser` events.
//!
//! serde stops at the first error; this tree keeps every key, value and position so the
//! validator can walk it, report every mistake and carry on.

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::collections::HashMap;

/// Where a node or key starts and ends. `line` is 1-based, `col` 0-based (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub line: usize,
    pub col: usize,
    pub end_line: usize,
    pub end_col: usize,
}

impl Pos {
    fn from_span(span: &Span) -> Pos {
        Pos {
            line: span.start.line(),
            col: span.start.col(),
            end_line: span.end.line(),
            end_col: span.end.col(),
        }
    }

    /// The caret width when the node sits on one line, else 1.
    pub fn len(&self) -> usize {
        if self.end_line == self.line && self.end_col > self.col {
            self.end_col - self.col
        } else {
            1
        }
    }
}

/// The scalar styles that matter for positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    /// `|` or `>`: the node's position is its first content line (not the indicator).
    Block,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Map(Vec<Entry>),
    Seq(Vec<Node>),
    Scalar(String, Style),
    /// An empty value, `~` or `null`.
    Null,
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: Kind,
    pub pos: Pos,
}

impl Node {
    /// How the node is named in "expected …, found …" messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            Kind::Map(_) => "a map",
            Kind::Seq(_) => "a list",
            Kind::Scalar(s, Style::Plain) if s.parse::<f64>().is_ok() => "a number",
            Kind::Scalar(s, Style::Plain) if matches!(s.as_str(), "true" | "false") => "a bool",
            Kind::Scalar(..) => "a string",
            Kind::Null => "nothing",
        }
    }
}

/// A problem found while reading the YAML itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct YamlError {
    pub line: usize,
    /// 0-based.
    pub col: usize,
    pub len: usize,
    pub message: String,
    pub hint: Option<String>,
}

enum Frame {
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<Entry>,
        key: Option<(String, Pos)>,
    },
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
}

/// The most nodes aliases may copy into one file's tree. A few lines of nested aliases
/// ("billion laughs") would otherwise expand to billions of nodes; real configs copy a few
/// hundred.
pub(crate) const MAX_ALIAS_NODES: usize = 100_000;

/// How many nodes `node` holds, itself included.
fn node_count(node: &Node) -> usize {
    1 + match &node.kind {
        Kind::Map(entries) => entries.iter().map(|e| node_count(&e.value)).sum(),
        Kind::Seq(items) => items.iter().map(node_count).sum(),
        _ => 0,
    }
}

struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    /// Each anchored node and its node count.
    anchors: HashMap<usize, (Node, usize)>,
    /// Nodes copied by aliases so far (bounded by [`MAX_ALIAS_NODES`]).
    alias_nodes: usize,
    errors: Vec<YamlError>,
}

impl Builder {
    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors
                .insert(anchor, (node.clone(), node_count(&node)));
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => {
                    let text = match &node.kind {
                        Kind::Scalar(s, _) => s.clone(),
                        Kind::Null => String::new(),
                        _ => {
                            self.errors.push(YamlError {
                                line: node.pos.line,
                                col: node.pos.col,
                                len: 1,
                                message: format!(
                                    "a map key must be a plain value, found {}",
                                    node.describe()
                                ),
                                hint: None,
                            });
                            String::from("?")
                        }
                    };
                    *key = Some((text, node.pos));
                }
                Some((k, key_pos)) => {
                    if let Some(first) = entries.iter().find(|e| e.key == k) {
                        self.errors.push(YamlError {
                            line: key_pos.line,
                            col: key_pos.col,
                            len: key_pos.len(),
                            message: format!("duplicate key `{k}`"),
                            hint: Some(format!(
                                "`{k}` is first defined at line {}",
                                first.key_pos.line
                            )),
                        });
                    } else {
                        entries.push(Entry {
                            key: k,
                            key_pos,
                            value: node,
                        });
                    }
                }
            },
        }
    }
}

/// A scalar's kind: plain `~`, `null` and the empty scalar are null; the rest keep their style.
fn scalar_kind(value: String, style: ScalarStyle) -> Kind {
    match style {
        ScalarStyle::Plain if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL") => {
            Kind::Null
        }
        ScalarStyle::Plain => Kind::Scalar(value, Style::Plain),
        ScalarStyle::SingleQuoted => Kind::Scalar(value, Style::SingleQuoted),
        ScalarStyle::DoubleQuoted => Kind::Scalar(value, Style::DoubleQuoted),
        _ => Kind::Scalar(value, Style::Block),
    }
}

impl Builder {
    /// The node an alias stands for (a copy of its anchor's), counted against the expansion
    /// limit; `Err` when the limit is passed (the whole parse stops: a billion-laughs file).
    /// An unknown alias is an error and a null.
    fn alias(&mut self, id: usize, pos: Pos) -> Result<Node, YamlError> {
        match self.anchors.get(&id) {
            Some((_, count)) if self.alias_nodes + count > MAX_ALIAS_NODES => Err(YamlError {
                line: pos.line,
                col: pos.col,
                len: pos.len(),
                message: format!(
                    "aliases expand to more than {MAX_ALIAS_NODES} nodes, the limit on alias \
                     expansion"
                ),
                hint: Some("write the repeated parts out, or use fewer nested aliases".into()),
            }),
            Some((n, count)) => {
                self.alias_nodes += count;
                Ok(Node {
                    kind: n.kind.clone(),
                    pos,
                })
            }
            None => {
                self.errors.push(YamlError {
                    line: pos.line,
                    col: pos.col,
                    len: pos.len(),
                    message: "unknown alias".into(),
                    hint: None,
                });
                Ok(Node {
                    kind: Kind::Null,
                    pos,
                })
            }
        }
    }
}

/// Parses one YAML document into a tree (None for an empty document) plus the problems found.
/// On a syntax error, the tree is None and the error comes alone (what follows it cannot be
/// trusted); duplicate keys are reported while the tree (keeping the first) is still returned.
pub(crate) fn parse(text: &str) -> (Option<Node>, Vec<YamlError>) {
    let mut parser = Parser::new_from_str(text);
    let mut b = Builder {
        stack: Vec::new(),
        root: None,
        anchors: HashMap::new(),
        alias_nodes: 0,
        errors: Vec::new(),
    };
    let mut documents = 0;
    while let Some(ev) = parser.next_event() {
        let (event, span) = match ev {
            Ok(x) => x,
            Err(e) => {
                let m = e.marker();
                let err = YamlError {
                    line: m.line().max(1),
                    col: m.col(),
                    len: 1,
                    message: format!("invalid YAML: {}", e.info()),
                    hint: None,
                };
                return (None, vec![err]);
            }
        };
        let pos = Pos::from_span(&span);
        match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    b.errors.push(YamlError {
                        line: pos.line,
                        col: pos.col,
                        len: 3,
                        message: "a config file holds one YAML document; found a second `---`"
                            .into(),
                        hint: Some(
                            "move these keys into the first document, or into an included file"
                                .into(),
                        ),
                    });
                    break;
                }
            }
            Event::Scalar(value, style, anchor, _tag) => {
                let kind = scalar_kind(value.into_owned(), style);
                b.finish(Node { kind, pos }, anchor);
            }
            Event::Alias(id) => match b.alias(id, pos) {
                Ok(node) => b.finish(node, 0),
                Err(limit) => return (None, vec![limit]),
            },
            Event::MappingStart(anchor, _) => {
                b.stack.push(Frame::Map {
                    pos,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                });
            }
            Event::SequenceStart(anchor, _) => {
                b.stack.push(Frame::Seq {
                    pos,
                    anchor,
                    items: Vec::new(),
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let (node, anchor) = match b.stack.pop() {
                    // Amortized growth leaves up to half of each Vec unused; the tree lives
                    // through the whole validation, so its maps and lists are trimmed.
                    Some(Frame::Map {
                        pos,
                        anchor,
                        mut entries,
                        ..
                    }) => {
                        entries.shrink_to_fit();
                        (
                            Node {
                                kind: Kind::Map(entries),
                                pos,
                            },
                            anchor,
                        )
                    }
                    Some(Frame::Seq {
                        pos,
                        anchor,
                        mut items,
                    }) => {
                        items.shrink_to_fit();
                        (
                            Node {
                                kind: Kind::Seq(items),
                                pos,
                            },
                            anchor,
                        )
                    }
                    None => continue,
                };
                b.finish(node, anchor);
            }
            Event::StreamEnd => break,
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
        }
    }
    (b.root, b.errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(n: &Node) -> &Vec<Entry> {
        match &n.kind {
            Kind::Map(m) => m,
            other => panic!("expected a map, got {other:?}"),
        }
    }

    #[test]
    fn builds_positions() {
        let text = "a: 1\nb:\n  - x\n  - 'y'\nc: { d: \"e\" }\nf:\ng: |\n  line1\n  line2\n";
        let (root, errs) = parse(text);
        assert!(errs.is_empty(), "{errs:?}");
        let root = root.unwrap();
        let m = map(&root);
        assert_eq!(
            m.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c", "f", "g"]
        );
        assert_eq!((m[0].key_pos.line, m[0].key_pos.col), (1, 0));
        assert_eq!((m[0].value.pos.line, m[0].value.pos.col), (1, 3));
        let Kind::Seq(items) = &m[1].value.kind else {
            panic!()
        };
        assert_eq!((items[1].pos.line, items[1].pos.col), (4, 4));
        assert!(matches!(&items[1].kind, Kind::Scalar(s, Style::SingleQuoted) if s == "y"));
        let c = map(&m[2].value);
        assert_eq!((c[0].value.pos.line, c[0].value.pos.col), (5, 8));
        assert!(matches!(m[3].value.kind, Kind::Null));
        assert!(matches!(&m[4].value.kind, Kind::Scalar(s, Style::Block) if s == "line1\nline2\n"));
        // A block scalar's span starts at its content, not at the `|`.
        assert_eq!((m[4].value.pos.line, m[4].value.pos.col), (8, 2));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let (root, errs) = parse("a: 1\nb: 2\na: 3\n");
        assert_eq!(map(&root.unwrap()).len(), 2);
        assert_eq!(errs.len(), 1);
        assert_eq!((errs[0].line, errs[0].col), (3, 0));
        assert_eq!(errs[0].message, "duplicate key `a`");
    }

    #[test]
    fn syntax_errors_are_positioned() {
        let (root, errs) = parse("a: [1, 2\nb: 3\n");
        assert!(root.is_none());
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].message.starts_with("invalid YAML"),
            "{}",
            errs[0].message
        );
    }

    #[test]
    fn aliases_are_copied() {
        let root = parse("a: &x [1, 2]\nb: *x\n").0.unwrap();
        let m = map(&root);
        assert!(matches!(&m[1].value.kind, Kind::Seq(v) if v.len() == 2));
    }

    /// "Billion laughs": nine levels of nine aliases would copy 9^9 nodes. The copy stops at
    /// the limit, at once, with the limit named.
    #[test]
    fn alias_bomb_is_bounded() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let t = std::time::Instant::now();
        let (root, errs) = parse(&text);
        assert!(root.is_none());
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].message.contains("more than 100000 nodes"),
            "{}",
            errs[0].message
        );
        assert_eq!(
            errs[0].line, 6,
            "the alias that crossed the limit (in `a5`)"
        );
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        // Below the limit, aliases still copy.
        let (root, errs) = parse(&text.lines().take(5).collect::<Vec<_>>().join("\n"));
        assert!(root.is_some() && errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn empty_document() {
        assert!(matches!(parse(""), (None, e) if e.is_empty()));
        assert!(matches!(parse("# only a comment\n"), (None, e) if e.is_empty()));
    }
}
