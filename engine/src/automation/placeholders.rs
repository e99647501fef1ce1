//! `{{name}}` placeholders in automated texts and canned replies, with an optional fallback
//! after a bar (`{{contact.name|there}}`). Pure: the caller says what each name holds.

use crate::error::EngineError;

/// Longest text with placeholders, in characters (Meta's limit for a text body).
pub const MAX_TEXT_CHARS: usize = 4096;

/// One `{{...}}` of a text: the name and its fallback.
struct Slot<'a> {
    name: &'a str,
    fallback: Option<&'a str>,
}

/// Splits `text` into literal pieces and slots; `Err` names an unclosed `{{`.
fn pieces(text: &str) -> Result<Vec<Result<&str, Slot<'_>>>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push(Ok(&rest[..open]));
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| "a `{{` is not closed by `}}`".to_owned())?;
        let inside = &after[..close];
        let (name, fallback) = match inside.split_once('|') {
            Some((name, fallback)) => (name.trim(), Some(fallback.trim())),
            None => (inside.trim(), None),
        };
        out.push(Err(Slot { name, fallback }));
        rest = &after[close + 2..];
    }
    out.push(Ok(rest));
    Ok(out)
}

/// Checks a text's length and that every placeholder is one of `known`.
pub fn check(field: &str, text: &str, known: &[&str]) -> Result<(), EngineError> {
    let length = text.trim().chars().count();
    if length == 0 || length > MAX_TEXT_CHARS {
        return Err(EngineError::Validation(format!(
            "`{field}` needs 1 to {MAX_TEXT_CHARS} characters"
        )));
    }
    let pieces =
        pieces(text).map_err(|why| EngineError::Validation(format!("`{field}`: {why}")))?;
    for piece in pieces {
        if let Err(slot) = piece
            && !known.contains(&slot.name)
        {
            return Err(EngineError::Validation(format!(
                "`{field}`: unknown placeholder `{{{{{}}}}}`; known: {}",
                slot.name,
                known
                    .iter()
                    .map(|k| format!("{{{{{k}}}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(())
}

/// Fills the placeholders: a name without a value takes its fallback, else nothing.
pub fn render(text: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let Ok(pieces) = pieces(text) else {
        return text.to_owned();
    };
    let mut out = String::with_capacity(text.len());
    for piece in pieces {
        match piece {
            Ok(literal) => out.push_str(literal),
            Err(slot) => match value(slot.name).filter(|v| !v.trim().is_empty()) {
                Some(filled) => out.push_str(&filled),
                None => out.push_str(slot.fallback.unwrap_or("")),
            },
        }
    }
    out
}

/// A wait as a customer reads it.
pub fn describe_wait(wait: Option<std::time::Duration>) -> String {
    let Some(wait) = wait else {
        return "a few minutes".to_owned();
    };
    let minutes = wait.as_secs().div_ceil(60);
    match minutes {
        0 | 1 => "less than a minute".to_owned(),
        2..=59 => format!("about {minutes} minutes"),
        _ => {
            let hours = minutes.div_ceil(60);
            if hours == 1 {
                "about an hour".to_owned()
            } else {
                format!("about {hours} hours")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["contact.name", "team.name"];

    #[test]
    fn fills_names_and_fallbacks() {
        let value = |name: &str| match name {
            "contact.name" => Some("Layla".to_owned()),
            _ => None,
        };
        assert_eq!(
            render(
                "Hi {{contact.name}}, {{ team.name | our team }} here",
                value
            ),
            "Hi Layla, our team here"
        );
        assert_eq!(render("{{team.name}}!", value), "!");
        assert_eq!(render("no slots", value), "no slots");
        // An empty value takes the fallback too.
        assert_eq!(
            render("Hi {{contact.name|there}}", |_| Some(" ".into())),
            "Hi there"
        );
    }

    #[test]
    fn unknown_or_unclosed_placeholders_are_refused_by_name() {
        assert!(check("text", "Hi {{contact.name}}", KNOWN).is_ok());
        let error = check("text", "Hi {{contact.email}}", KNOWN)
            .unwrap_err()
            .to_string();
        assert!(error.contains("contact.email"), "{error}");
        let error = check("text", "Hi {{contact.name", KNOWN)
            .unwrap_err()
            .to_string();
        assert!(error.contains("not closed"), "{error}");
        assert!(check("text", "  ", KNOWN).is_err());
        assert!(check("text", &"x".repeat(MAX_TEXT_CHARS + 1), KNOWN).is_err());
    }

    #[test]
    fn waits_read_as_a_customer_reads_them() {
        use std::time::Duration;
        assert_eq!(
            describe_wait(Some(Duration::from_secs(20))),
            "less than a minute"
        );
        assert_eq!(
            describe_wait(Some(Duration::from_secs(301))),
            "about 6 minutes"
        );
        assert_eq!(
            describe_wait(Some(Duration::from_secs(3600))),
            "about an hour"
        );
        assert_eq!(
            describe_wait(Some(Duration::from_secs(7300))),
            "about 3 hours"
        );
        assert_eq!(describe_wait(None), "a few minutes");
    }
}
