//! Statistics of distribution assertions. Body being written by the pure-modules helper.
