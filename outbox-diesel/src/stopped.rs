//! Stopped partitions: recorded when a consumer stops on a record, until resumed.
