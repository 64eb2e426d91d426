// Both required arguments missing: both reported.
pub struct User;
pub struct UsersController;

#[outbox::message_controller(route = "users")]
impl UsersController {}

fn main() {}
