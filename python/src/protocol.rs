//! The command line's protocol flags as keyword arguments.

use pspnet::model::{Average, Protocol, ProtocolChoice, WindowMode};
use pyo3::prelude::*;

use crate::errors::{input_error, value_error};

/// `mode`, `crop`, `stride`, `base_size`, `flip`, `scales`, `average` and
/// `preset`, as `segment`'s flags take them; `None` leaves the preset's (or
/// a whole-image pass's) choice.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProtocolArgs {
    pub(crate) mode: Option<String>,
    pub(crate) crop: Option<usize>,
    pub(crate) stride: Option<usize>,
    pub(crate) base_size: Option<usize>,
    pub(crate) flip: Option<bool>,
    pub(crate) scales: Option<Vec<f64>>,
    pub(crate) average: Option<String>,
    pub(crate) preset: Option<String>,
}

impl ProtocolArgs {
    /// The protocol, `default_preset` applying when no preset is named.
    pub(crate) fn protocol(&self, default_preset: Option<&str>) -> PyResult<Protocol> {
        let mode = match self.mode.as_deref() {
            None => None,
            Some("whole") => Some(WindowMode::Whole),
            Some("slide") => Some(WindowMode::Slide),
            Some(other) => return Err(value_error(format!("mode {other:?}: expected \"whole\" or \"slide\""))),
        };
        let average = match self.average.as_deref() {
            None => None,
            Some("probs") => Some(Average::Probs),
            Some("logits") => Some(Average::Logits),
            Some(other) => return Err(value_error(format!("average {other:?}: expected \"probs\" or \"logits\""))),
        };
        let choice = ProtocolChoice {
            preset: self.preset.clone(),
            mode,
            crop: self.crop,
            stride: self.stride,
            scales: self.scales.clone(),
            flip: self.flip,
            base_size: self.base_size,
            average,
        };
        choice.protocol(default_preset).map_err(|e| input_error(e.into()))
    }
}
