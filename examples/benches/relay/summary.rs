//! The final summary: figures, their targets and verdicts, and the problems
//! seen.

use crate::common::report;

/// One line of the final summary.
struct Figure {
    name: String,
    value: String,
    target: String,
    verdict: Option<bool>,
}

#[derive(Default)]
pub(crate) struct Summary {
    figures: Vec<Figure>,
    pub(crate) problems: Vec<String>,
}

impl Summary {
    /// A figure.
    pub(crate) fn add(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.figures.push(Figure {
            name: name.into(),
            value: value.into(),
            target: String::new(),
            verdict: None,
        });
    }

    /// A figure with its target, and whether it met it.
    pub(crate) fn check(
        &mut self,
        name: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        pass: bool,
    ) {
        self.figures.push(Figure {
            name: name.into(),
            value: value.into(),
            target: target.into(),
            verdict: Some(pass),
        });
    }

    pub(crate) fn print(&self) {
        let width = self
            .figures
            .iter()
            .map(|f| f.name.chars().count())
            .max()
            .unwrap_or(0);
        let value_width = self
            .figures
            .iter()
            .map(|f| f.value.chars().count())
            .max()
            .unwrap_or(0);
        report::summary_heading();
        for f in &self.figures {
            let verdict = match f.verdict {
                Some(true) => "PASS",
                Some(false) => "MISS",
                None => "",
            };
            println!(
                "  {:<width$}  {:>value_width$}  {:<26} {verdict}",
                f.name, f.value, f.target
            );
        }
        report::problems(&self.problems);
    }
}
