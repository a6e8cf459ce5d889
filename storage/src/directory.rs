//! Room directory: aliases, published rooms. (Being written.)

use crate::Store;

impl Store {}
