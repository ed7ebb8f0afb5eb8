//! Adam on plain tensors (no module wrapper), so that the learning rate can
//! change between any two iterations — the GUI's live tuning needs that.

use burn::tensor::Tensor;

pub struct Adam {
    m: Tensor<2>,
    v: Tensor<2>,
    t: i32,
}

pub const BETA1: f64 = 0.9;
pub const BETA2: f64 = 0.999;
pub const EPSILON: f64 = 1e-8;

impl Adam {
    pub fn new(like: &Tensor<2>) -> Self {
        Self {
            m: like.zeros_like(),
            v: like.zeros_like(),
            t: 0,
        }
    }

    /// An optimiser resumed from its moments and step count (a checkpoint).
    pub fn from_state(m: Tensor<2>, v: Tensor<2>, t: i32) -> Self {
        Self { m, v, t }
    }

    /// Its moments and step count, for a checkpoint.
    pub fn state(&self) -> (&Tensor<2>, &Tensor<2>, i32) {
        (&self.m, &self.v, self.t)
    }

    /// One bias-corrected Adam step: returns `param − lr · m̂ / (√v̂ + ε)`.
    pub fn step(&mut self, param: Tensor<2>, grad: Tensor<2>, lr: f64) -> Tensor<2> {
        self.t += 1;
        self.m =
            self.m.clone().mul_scalar(BETA1 as f32) + grad.clone().mul_scalar((1.0 - BETA1) as f32);
        self.v = self.v.clone().mul_scalar(BETA2 as f32)
            + grad.square().mul_scalar((1.0 - BETA2) as f32);
        let c1 = 1.0 - BETA1.powi(self.t);
        let c2 = 1.0 - BETA2.powi(self.t);
        let step = self.m.clone().div_scalar(c1 as f32)
            / self
                .v
                .clone()
                .div_scalar(c2 as f32)
                .sqrt()
                .add_scalar(EPSILON as f32);
        param - step.mul_scalar(lr as f32)
    }
}
