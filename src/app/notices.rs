//! What the viewer tells the user: the status line, notices (dropped when
//! the result they spoke of is replaced) and errors (kept until dismissed).
//! Plain data, no egui.

/// A line shown to the user: errors stay until dismissed.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub text: String,
    pub error: bool,
}

#[derive(Default)]
pub struct Notices {
    pub messages: Vec<Message>,
    /// The status bar's line: the latest message, or the read-out under
    /// the mouse.
    pub status: String,
}

impl Notices {
    pub fn error(&mut self, text: impl Into<String>) {
        self.push(text.into(), true);
    }

    pub fn notice(&mut self, text: impl Into<String>) {
        self.push(text.into(), false);
    }

    fn push(&mut self, text: String, error: bool) {
        let text = printable(text);
        self.status = text.clone();
        self.messages.push(Message { text, error });
    }

    /// Drop the notices (not the errors): they spoke of the result that
    /// was shown, and another one takes its place.
    pub fn clear(&mut self) {
        self.messages.retain(|m| m.error);
    }

    pub fn errors(&self) -> Vec<&str> {
        self.messages
            .iter()
            .filter(|m| m.error)
            .map(|m| m.text.as_str())
            .collect()
    }

    /// The newest error (the banner shows it).
    pub fn latest_error(&self) -> Option<&Message> {
        self.messages.iter().rev().find(|m| m.error)
    }

    /// Dismiss the newest error.
    pub fn dismiss_latest_error(&mut self) {
        if let Some(i) = self.messages.iter().rposition(|m| m.error) {
            self.messages.remove(i);
        }
    }

    /// The newest `n` notices (not errors), newest first, with their index
    /// for [`Notices::dismiss`].
    pub fn latest_notices(&self, n: usize) -> Vec<(usize, &str)> {
        self.messages
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, m)| !m.error)
            .take(n)
            .map(|(i, m)| (i, m.text.as_str()))
            .collect()
    }

    pub fn dismiss(&mut self, index: usize) {
        if index < self.messages.len() {
            self.messages.remove(index);
        }
    }
}

/// Messages from other libraries (a shader compiler's report, say) may
/// draw boxes with characters the UI font lacks: they become ASCII.
fn printable(text: String) -> String {
    if !text.chars().any(|c| ('\u{2500}'..='\u{257F}').contains(&c)) {
        return text;
    }
    const VERTICAL: &str = "│┃┆┇┊┋╎╏║╵╷╹╻╽╿";
    const HORIZONTAL: &str = "─━┄┅┈┉╌╍═╴╶╸╺╼╾";
    text.chars()
        .map(|c| match c {
            '\u{2500}'..='\u{257F}' if VERTICAL.contains(c) => '|',
            '\u{2500}'..='\u{257F}' if HORIZONTAL.contains(c) => '-',
            '\u{2500}'..='\u{257F}' => '+',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_drawing_becomes_ascii() {
        let naga =
            "   ┌─ kernel:56:11\n   │\n56 │ let v = u64(32);\n   │         ^^^^^^^\n   ╰── here";
        let p = printable(naga.to_string());
        assert_eq!(
            p,
            "   +- kernel:56:11\n   |\n56 | let v = u64(32);\n   |         ^^^^^^^\n   +-- here"
        );
        assert_eq!(printable("det J ≥ 0 · 1–7".into()), "det J ≥ 0 · 1–7");
    }

    #[test]
    fn clearing_drops_notices_and_keeps_errors() {
        let mut n = Notices::default();
        n.notice("run 1 folds");
        n.error("could not open a.nii");
        n.notice("run 1 finished");
        assert_eq!(n.status, "run 1 finished");
        assert_eq!(n.latest_notices(8).len(), 2);
        assert_eq!(n.latest_notices(8)[0].1, "run 1 finished");
        n.clear();
        assert!(n.latest_notices(8).is_empty());
        assert_eq!(n.errors(), ["could not open a.nii"]);
        n.dismiss_latest_error();
        assert!(n.latest_error().is_none());
        assert!(n.messages.is_empty());
    }

    #[test]
    fn dismissing_a_notice_leaves_the_others() {
        let mut n = Notices::default();
        for t in ["a", "b", "c"] {
            n.notice(t);
        }
        let (i, _) = n.latest_notices(8)[1];
        n.dismiss(i);
        let left: Vec<_> = n.latest_notices(8).iter().map(|(_, t)| *t).collect();
        assert_eq!(left, ["c", "a"]);
        n.dismiss(99);
        assert_eq!(n.messages.len(), 2);
    }
}
