//! What follows a convolution's sum, fused so that each finished tile is
//! completed while it is still in cache.

/// What happens to each output value after the sum: `relu?(v * scale[c] +
/// shift[c] + residual)`.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    pub(crate) scale: Option<&'a [f32]>,
    pub(crate) shift: Option<&'a [f32]>,
    pub(crate) residual: Option<&'a [f32]>,
    pub(crate) relu: bool,
}

impl Epilogue<'_> {
    /// Finishes `row`, the values of output channel `channel` that start at
    /// flat index `start` of the image's output, in one pass.
    pub(crate) fn apply(&self, row: &mut [f32], channel: usize, start: usize) {
        if self.scale.is_none() && self.shift.is_none() && self.residual.is_none() && !self.relu {
            return;
        }
        let scale = self.scale.map_or(1.0, |s| s[channel]);
        let shift = self.shift.map_or(0.0, |s| s[channel]);
        let relu = self.relu;
        let finish = |v: f32, r: f32| {
            let y = v * scale + shift + r;
            if relu { y.max(0.0) } else { y }
        };
        match self.residual {
            Some(residual) => {
                let len = row.len();
                row.iter_mut().zip(&residual[start..start + len]).for_each(|(v, &r)| *v = finish(*v, r));
            }
            None => row.iter_mut().for_each(|v| *v = finish(*v, 0.0)),
        }
    }
}
