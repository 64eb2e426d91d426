// Each argument once.
pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users, table = accounts)]
impl UsersController {}

fn main() {}
