//! Readers and writers for every file nclab reads.
