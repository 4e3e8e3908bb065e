//! Segmentation metrics as semseg's `intersectionAndUnion` and
//! mmsegmentation compute them: intersection, union and target areas summed
//! over the whole dataset, then IoU and accuracy per class.

/// Pixel counts of (label, prediction) pairs over a dataset: `classes x classes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    classes: usize,
    counts: Vec<u64>,
}

/// One class's scores; `None` where the class is undefined (see [`Scores`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassScore {
    /// Intersection over union, in percent.
    pub iou: Option<f64>,
    /// Pixel accuracy (intersection over label area), in percent.
    pub acc: Option<f64>,
}

/// Dataset-level scores, in percent.
///
/// A class with no pixels in the labels and none predicted has no IoU and no
/// accuracy; a class absent from the labels but predicted has IoU 0 and no
/// accuracy. Undefined values are left out of the means.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// Per class, in class order.
    pub per_class: Vec<ClassScore>,
    /// Mean IoU over the classes where it is defined.
    pub miou: f64,
    /// Mean accuracy over the classes where it is defined.
    pub macc: f64,
    /// Overall pixel accuracy: correct pixels over labelled pixels.
    pub aacc: f64,
}

impl ConfusionMatrix {
    /// An empty matrix for `classes` classes.
    pub fn new(classes: usize) -> Self {
        ConfusionMatrix { classes, counts: vec![0; classes * classes] }
    }

    /// Rebuilds a matrix from its counts (label-major), e.g. read back from a
    /// partial result; `None` if the length is not `classes^2`.
    pub fn from_counts(classes: usize, counts: Vec<u64>) -> Option<Self> {
        (counts.len() == classes * classes).then_some(ConfusionMatrix { classes, counts })
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The counts, `counts[label * classes + prediction]`.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Adds one image: `labels[i]` is a class or `ignore`, `predictions[i]` a
    /// class. Out-of-range values are the caller's to refuse beforehand;
    /// here they are skipped like `ignore`.
    pub fn add(&mut self, labels: &[u16], predictions: &[u32], ignore: u16) {
        for (&l, &p) in labels.iter().zip(predictions) {
            let (l, p) = (l as usize, p as usize);
            if l != ignore as usize && l < self.classes && p < self.classes {
                self.counts[l * self.classes + p] += 1;
            }
        }
    }

    /// Adds another matrix of the same class count (a shard's).
    pub fn merge(&mut self, other: &ConfusionMatrix) -> Option<()> {
        if other.classes != self.classes {
            return None;
        }
        self.counts.iter_mut().zip(&other.counts).for_each(|(a, b)| *a += b);
        Some(())
    }

    /// IoU, accuracy and their means.
    pub fn scores(&self) -> Scores {
        let c = self.classes;
        let per_class: Vec<ClassScore> = (0..c)
            .map(|k| {
                let intersection = self.counts[k * c + k] as f64;
                let target: u64 = self.counts[k * c..(k + 1) * c].iter().sum();
                let predicted: u64 = (0..c).map(|l| self.counts[l * c + k]).sum();
                let union = target as f64 + predicted as f64 - intersection;
                ClassScore {
                    iou: (union > 0.0).then(|| 100.0 * intersection / union),
                    acc: (target > 0).then(|| 100.0 * intersection / target as f64),
                }
            })
            .collect();
        let mean = |values: Vec<f64>| {
            if values.is_empty() { f64::NAN } else { values.iter().sum::<f64>() / values.len() as f64 }
        };
        let correct: u64 = (0..c).map(|k| self.counts[k * c + k]).sum();
        let total: u64 = self.counts.iter().sum();
        Scores {
            miou: mean(per_class.iter().filter_map(|s| s.iou).collect()),
            macc: mean(per_class.iter().filter_map(|s| s.acc).collect()),
            aacc: if total > 0 { 100.0 * correct as f64 / total as f64 } else { f64::NAN },
            per_class,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_scores() {
        // 3 classes; class 2 never labelled, predicted once; 255 ignored.
        let mut m = ConfusionMatrix::new(3);
        m.add(&[0, 0, 0, 1, 1, 255, 1], &[0, 0, 1, 1, 2, 0, 1], 255);
        // class 0: I 2, T 3, P 2 -> IoU 2/3, Acc 2/3
        // class 1: I 2, T 3, P 3 -> IoU 2/4, Acc 2/3
        // class 2: I 0, T 0, P 1 -> IoU 0, Acc undefined
        let s = m.scores();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(s.per_class[0].iou.unwrap(), 200.0 / 3.0));
        assert!(close(s.per_class[1].iou.unwrap(), 50.0));
        assert_eq!(s.per_class[2], ClassScore { iou: Some(0.0), acc: None });
        assert!(close(s.miou, (200.0 / 3.0 + 50.0) / 3.0));
        assert!(close(s.macc, 200.0 / 3.0));
        assert!(close(s.aacc, 400.0 / 6.0));
        let mut n = ConfusionMatrix::new(4);
        n.add(&[3], &[3], 255);
        assert_eq!(n.scores().per_class[0], ClassScore { iou: None, acc: None });
        assert!(m.merge(&n).is_none());
        let twice = {
            let mut t = m.clone();
            t.merge(&m).unwrap();
            t
        };
        assert_eq!(twice.scores().miou, s.miou);
        assert_eq!(ConfusionMatrix::from_counts(3, m.counts().to_vec()), Some(m));
    }
}
