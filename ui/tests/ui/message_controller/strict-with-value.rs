// `strict` is a flag.
pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users, strict = true)]
impl UsersController {}

fn main() {}
