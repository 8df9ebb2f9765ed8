//! The services. Each exposes one cycle of work over a [`crate::store::Store`]; loops, sleeps and
//! signals belong to the runtime, not here.

pub mod finder;
pub mod seeder;
pub mod synchronizer;
pub mod validator;
