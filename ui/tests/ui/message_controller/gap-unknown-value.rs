// `gap` is one of three policies.
pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users, gap = "retry")]
impl UsersController {}

fn main() {}
