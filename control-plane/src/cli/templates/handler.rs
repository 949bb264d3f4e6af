//! __NAME__: a Gantry function as a static executable (standard library only).
//!
//! The input JSON arrives on stdin (checked against `input_schema` in function.yaml
//! before the call); the last line printed on stdout is the output and must be JSON.
//! stderr goes to the execution's logs; a non-zero exit is a FUNCTION_ERROR.
use std::io::Read;

/// The output for one input.
fn handle(input: &str) -> String {
    let name = string_field(input, "name").unwrap_or_else(|| "world".to_owned());
    // input_schema allows only letters, digits, spaces, '.', '_' and '-' in "name".
    format!("{{\"greeting\":\"hello, {name}\"}}")
}

/// The value of a top-level string field, for inputs without escapes in it.
fn string_field(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = json[start..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_owned())
}

fn main() {
    let mut input = String::new();
    if let Err(err) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("cannot read stdin: {err}");
        std::process::exit(1);
    }
    eprintln!("got {} bytes", input.len());
    println!("{}", handle(&input));
}

#[cfg(test)]
mod tests {
    use super::handle;

    #[test]
    fn greets_by_name() {
        assert_eq!(handle(r#"{"name": "Ada"}"#), r#"{"greeting":"hello, Ada"}"#);
    }

    #[test]
    fn greets_the_world_without_a_name() {
        assert_eq!(handle("{}"), r#"{"greeting":"hello, world"}"#);
    }
}
