//! What a user watches: the live [`dashboard`] (its data types always; its
//! server, like the pictures and the progress bar, with the `view` feature).

pub mod dashboard;
#[cfg(feature = "view")]
pub mod pictures;
#[cfg(feature = "view")]
pub mod progress;
