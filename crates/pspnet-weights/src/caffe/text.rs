//! Protobuf's text format, as deploy `.prototxt` files use it: a tokenizer,
//! a parser into a generic tree of named fields (nesting bounded), and the
//! same `NetParameter` fields the binary reader takes, by name.

use super::{CaffeLayer, CaffeNet, ConvolutionFields, ConvolutionParam, InterpParam, PoolMethod, PoolingParam};

/// A parse error at a line (1-based).
#[derive(Debug)]
pub(super) struct TextError {
    pub(super) line: usize,
    pub(super) reason: String,
}

/// The deepest nesting of messages read; PSPNet's prototxts nest three deep.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Open,
    Close,
    Colon,
}

/// A field's value: a scalar token's text, or a nested message.
#[derive(Debug)]
enum Node {
    Scalar(String, usize),
    Message(Vec<(String, Node)>, usize),
}

/// The tokens of `text`, each with its line.
fn tokens(text: &str) -> Result<Vec<(Token, usize)>, TextError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() || c == ';' || c == ',' => {}
            '#' => while chars.next_if(|&c| c != '\n').is_some() {},
            '{' | '<' => out.push((Token::Open, line)),
            '}' | '>' => out.push((Token::Close, line)),
            ':' => out.push((Token::Colon, line)),
            '"' | '\'' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('\\') => match chars.next() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(other) => s.push(other),
                            None => return Err(TextError { line, reason: "unterminated string".into() }),
                        },
                        Some('\n') | None => return Err(TextError { line, reason: "unterminated string".into() }),
                        Some(other) => s.push(other),
                    }
                }
                out.push((Token::Text(s), line));
            }
            c if c.is_alphanumeric() || matches!(c, '_' | '-' | '+' | '.') => {
                let mut word = c.to_string();
                while let Some(c) = chars.next_if(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '+' | '.')) {
                    word.push(c);
                }
                out.push((Token::Word(word), line));
            }
            other => return Err(TextError { line, reason: format!("unexpected character {other:?}") }),
        }
    }
    Ok(out)
}

/// Parses fields until the end (`depth` 0) or a closing brace.
fn message(tokens: &[(Token, usize)], pos: &mut usize, depth: usize) -> Result<Vec<(String, Node)>, TextError> {
    let mut fields = Vec::new();
    while let Some((token, line)) = tokens.get(*pos).cloned() {
        let name = match token {
            Token::Close if depth > 0 => {
                *pos += 1;
                return Ok(fields);
            }
            Token::Word(name) => name,
            other => return Err(TextError { line, reason: format!("expected a field name, found {other:?}") }),
        };
        *pos += 1;
        let colon = matches!(tokens.get(*pos), Some((Token::Colon, _)));
        if colon {
            *pos += 1;
        }
        let value = match tokens.get(*pos).cloned() {
            Some((Token::Open, line)) => {
                if depth + 1 > MAX_DEPTH {
                    return Err(TextError { line, reason: format!("messages nested deeper than {MAX_DEPTH}") });
                }
                *pos += 1;
                Node::Message(message(tokens, pos, depth + 1)?, line)
            }
            Some((Token::Word(v) | Token::Text(v), line)) if colon => {
                *pos += 1;
                Node::Scalar(v, line)
            }
            _ => return Err(TextError { line, reason: format!("field `{name}` has no value") }),
        };
        fields.push((name, value));
    }
    if depth > 0 {
        let line = tokens.last().map_or(1, |(_, l)| *l);
        return Err(TextError { line, reason: "a message is not closed".into() });
    }
    Ok(fields)
}

/// A scalar field as a number of type `T`.
fn number<T: std::str::FromStr>(name: &str, node: &Node) -> Result<T, TextError> {
    match node {
        Node::Scalar(v, line) => {
            v.parse().map_err(|_| TextError { line: *line, reason: format!("`{name}: {v}` is not a valid number") })
        }
        Node::Message(_, line) => {
            Err(TextError { line: *line, reason: format!("`{name}` is a message, a number was expected") })
        }
    }
}

/// A scalar field's text.
fn scalar<'a>(name: &str, node: &'a Node) -> Result<&'a str, TextError> {
    match node {
        Node::Scalar(v, _) => Ok(v),
        Node::Message(_, line) => {
            Err(TextError { line: *line, reason: format!("`{name}` is a message, a value was expected") })
        }
    }
}

/// Reads a `NetParameter` in text format.
pub(super) fn net(text: &str) -> Result<CaffeNet, TextError> {
    let tokens = tokens(text)?;
    let fields = message(&tokens, &mut 0, 0)?;
    let mut net = CaffeNet::default();
    for (name, node) in &fields {
        match (name.as_str(), node) {
            ("name", node) => net.name = Some(scalar(name, node)?.to_string()),
            ("layer", Node::Message(fields, _)) => net.layers.push(layer(fields)?),
            ("layers", Node::Message(_, line) | Node::Scalar(_, line)) => {
                let reason = "V1 `layers` of an old Caffe; only `layer` is read".into();
                return Err(TextError { line: *line, reason });
            }
            _ => {}
        }
    }
    if net.layers.is_empty() {
        return Err(TextError { line: 1, reason: "no `layer`: not a Caffe network".into() });
    }
    Ok(net)
}

fn layer(fields: &[(String, Node)]) -> Result<CaffeLayer, TextError> {
    let mut layer = CaffeLayer::default();
    for (name, node) in fields {
        match (name.as_str(), node) {
            ("name", node) => layer.name = scalar(name, node)?.to_string(),
            ("type", node) => layer.kind = scalar(name, node)?.to_string(),
            ("bottom", node) => layer.bottoms.push(scalar(name, node)?.to_string()),
            ("top", node) => layer.tops.push(scalar(name, node)?.to_string()),
            ("convolution_param", Node::Message(f, _)) => layer.convolution = Some(convolution(f)?),
            ("pooling_param", Node::Message(f, _)) => layer.pooling = Some(pooling(f)?),
            ("interp_param", Node::Message(f, _)) => layer.interp = Some(interp(f)?),
            ("bn_param", Node::Message(f, _)) => {
                for (name, node) in f {
                    if name == "eps" {
                        let eps: f32 = number(name, node)?;
                        if !(eps.is_finite() && eps > 0.0) {
                            let line = if let Node::Scalar(_, line) = node { *line } else { 0 };
                            return Err(TextError {
                                line,
                                reason: format!("batch-norm eps {eps} is not a positive number"),
                            });
                        }
                        layer.bn_eps = Some(eps);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(layer)
}

fn convolution(fields: &[(String, Node)]) -> Result<ConvolutionParam, TextError> {
    const HW: [&str; 6] = ["pad_h", "pad_w", "kernel_h", "kernel_w", "stride_h", "stride_w"];
    let mut c = ConvolutionFields::default();
    for (name, node) in fields {
        match name.as_str() {
            "num_output" => c.param.num_output = Some(number(name, node)?),
            "bias_term" => c.param.bias_term = Some(scalar(name, node)? == "true"),
            "group" => c.param.group = Some(number(name, node)?),
            "pad" => c.pad.push(number(name, node)?),
            "kernel_size" => c.kernel.push(number(name, node)?),
            "stride" => c.stride.push(number(name, node)?),
            "dilation" | "hole_h" => c.dilation.push(number(name, node)?),
            "hole" => c.hole = Some(number(name, node)?),
            "hole_w" => c.hole_w = Some(number(name, node)?),
            other => {
                if let Some(i) = HW.iter().position(|&h| h == other) {
                    c.hw[i] = Some(number(name, node)?);
                }
            }
        }
    }
    Ok(c.finish())
}

fn pooling(fields: &[(String, Node)]) -> Result<PoolingParam, TextError> {
    let mut p =
        PoolingParam { method: PoolMethod::Max, kernel: [None; 2], stride: [None; 2], pad: [None; 2], global: false };
    let mut values: [Option<u32>; 9] = [None; 9];
    const NAMES: [&str; 9] =
        ["kernel_size", "stride", "pad", "kernel_h", "kernel_w", "stride_h", "stride_w", "pad_h", "pad_w"];
    for (name, node) in fields {
        match name.as_str() {
            "pool" => {
                p.method = match scalar(name, node)? {
                    "MAX" => PoolMethod::Max,
                    "AVE" => PoolMethod::Average,
                    "STOCHASTIC" => PoolMethod::Stochastic,
                    other => {
                        let line = if let Node::Scalar(_, line) = node { *line } else { 0 };
                        return Err(TextError { line, reason: format!("pooling method {other:?}") });
                    }
                }
            }
            "global_pooling" => p.global = scalar(name, node)? == "true",
            other => {
                if let Some(i) = NAMES.iter().position(|&n| n == other) {
                    values[i] = Some(number(name, node)?);
                }
            }
        }
    }
    let [kernel, stride, pad, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w] = values;
    p.kernel = [kernel_h.or(kernel), kernel_w.or(kernel)];
    p.stride = [stride_h.or(stride), stride_w.or(stride)];
    p.pad = [pad_h.or(pad), pad_w.or(pad)];
    Ok(p)
}

fn interp(fields: &[(String, Node)]) -> Result<InterpParam, TextError> {
    let mut p = InterpParam::default();
    for (name, node) in fields {
        match name.as_str() {
            "height" => p.height = Some(number(name, node)?),
            "width" => p.width = Some(number(name, node)?),
            "zoom_factor" => p.zoom_factor = Some(number(name, node)?),
            "shrink_factor" => p.shrink_factor = Some(number(name, node)?),
            _ => {}
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_deploy_prototxt() {
        let text = r#"
            # PSPNet's deploy files start with the input
            input: "data"
            input_dim: 1
            layer {
              name: "conv1_1_3x3_s2"  type: "Convolution"
              bottom: "data" top: "conv1_1_3x3_s2"
              param { lr_mult: 1 decay_mult: 1 }
              convolution_param { num_output: 64 pad: 1 kernel_size: 3 stride: 2 bias_term: false
                weight_filler { type: "msra" } }
            }
            layer { name: "conv1_1_3x3_s2/bn" type: "BN" bn_param { scale_filler { type: "constant" value: 1 } eps: 1e-5 } }
            layer { name: "conv5_3_pool6" type: "Pooling" pooling_param { pool: AVE kernel_size: 10 stride: 10 } }
            layer { name: "conv5_3_pool6_interp" type: "Interp" interp_param { height: 60 width: 60 } }
        "#;
        let net = net(text).unwrap();
        assert_eq!(net.layers.len(), 4);
        let conv = net.layers[0].convolution.as_ref().unwrap();
        assert_eq!(
            (conv.num_output, conv.bias_term, conv.kernel, conv.stride),
            (Some(64), Some(false), [Some(3); 2], [Some(2); 2])
        );
        assert_eq!(net.layers[1].bn_eps, Some(1e-5));
        let pool = net.layers[2].pooling.as_ref().unwrap();
        assert_eq!((pool.method, pool.kernel, pool.stride), (PoolMethod::Average, [Some(10); 2], [Some(10); 2]));
        assert_eq!(net.layers[3].interp.as_ref().unwrap().height, Some(60));
    }

    #[test]
    fn refuses_malformed_text_by_line() {
        for (text, needle, line) in [
            ("layer {\n name: \"a\"", "not closed", 2),
            ("layer {\n name: \"a }", "unterminated string", 2),
            ("layer { name: }", "has no value", 1),
            ("layer { }\n}", "expected a field name", 2),
            ("layer {\n convolution_param { num_output: many } }", "not a valid number", 2),
            ("input: \"data\"", "no `layer`", 1),
            ("layer { name: \"a\" } \u{1}", "unexpected character", 1),
        ] {
            let err = net(text).unwrap_err();
            assert!(err.reason.contains(needle) && err.line == line, "{text:?}: {err:?}");
        }
        let deep = "layer { a { ".repeat(40);
        assert!(net(&deep).unwrap_err().reason.contains("nested deeper"));
    }
}
