//! The Graph simulator (being written on its own branch).
