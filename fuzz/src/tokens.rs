//! Token streams from arbitrary text, and the invisible groups that
//! `macro_rules!` fragments (`$topic:literal`, `$model:ty`) put around values.

use proc_macro2::{Delimiter, Group, TokenStream, TokenTree};

/// Flag: wrap every literal in an invisible group (a `$x:literal` fragment).
pub const WRAP_LITERALS: u8 = 1;
/// Flag: wrap what follows each `=` up to the next `,` in an invisible group
/// (a `$x:ty`, `$x:path` or `$x:expr` fragment).
pub const WRAP_VALUES: u8 = 2;

/// `text` lexed as Rust tokens, with the invisible groups `flags` asks for;
/// `None` when it does not lex.
pub fn lex(text: &str, flags: u8) -> Option<TokenStream> {
    let tokens: TokenStream = text.parse().ok()?;
    Some(wrap(tokens, flags))
}

fn wrap(tokens: TokenStream, flags: u8) -> TokenStream {
    let mut out = Vec::new();
    let mut value: Option<Vec<TokenTree>> = None;
    for tree in tokens {
        let tree = match tree {
            TokenTree::Group(group) => {
                let mut inner = Group::new(group.delimiter(), wrap(group.stream(), flags));
                inner.set_span(group.span());
                TokenTree::Group(inner)
            }
            TokenTree::Literal(literal) if flags & WRAP_LITERALS != 0 => {
                invisible(TokenStream::from(TokenTree::Literal(literal)))
            }
            other => other,
        };
        if flags & WRAP_VALUES == 0 {
            out.push(tree);
            continue;
        }
        match (&tree, &mut value) {
            (TokenTree::Punct(p), Some(collected)) if p.as_char() == ',' => {
                out.push(invisible(collected.drain(..).collect()));
                value = None;
                out.push(tree);
            }
            (_, Some(collected)) => collected.push(tree),
            (TokenTree::Punct(p), None) if p.as_char() == '=' => {
                out.push(tree);
                value = Some(Vec::new());
            }
            _ => out.push(tree),
        }
    }
    if let Some(collected) = value {
        out.push(invisible(collected.into_iter().collect()));
    }
    out.into_iter().collect()
}

fn invisible(stream: TokenStream) -> TokenTree {
    TokenTree::Group(Group::new(Delimiter::None, stream))
}
