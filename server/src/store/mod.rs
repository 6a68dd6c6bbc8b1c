//! Storage: diesel table definitions, row structs and the queries, one module per table group.
//! Functions take `&mut AsyncMysqlConnection` so callers compose them inside one transaction.

pub mod api_keys;
pub mod projects;
pub mod schema;

pub use diesel_async::AsyncMysqlConnection as Conn;
