// `group` takes `true` or `false`.
pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users, group = "no")]
impl UsersController {}

fn main() {}
