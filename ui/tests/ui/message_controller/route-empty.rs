// A route is a `to` header value: not empty.
pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users, route = "")]
impl UsersController {}

fn main() {}
