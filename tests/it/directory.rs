//! Room directory: aliases, visibility and /publicRooms. (Being written.)
