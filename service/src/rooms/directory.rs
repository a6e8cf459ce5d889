//! Room directory: aliases and the public room list. (Being written.)

use super::Rooms;

impl Rooms {}
