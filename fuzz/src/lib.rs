//! Shared properties for the fuzz targets; see `properties.rs`.

mod properties;

pub use properties::*;
