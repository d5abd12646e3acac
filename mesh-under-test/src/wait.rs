//! The one waiting helper. INTERFACE PINNED; body being written by the pure-modules helper.
