// An unknown argument, with the nearest valid one.
pub struct User;
pub struct UsersController;

#[outbox::message_controller(modle = User, table = users)]
impl UsersController {}

fn main() {}
