//! The server start every binary shares, exercised over real sockets.

mod bus;
mod db;
mod server;
