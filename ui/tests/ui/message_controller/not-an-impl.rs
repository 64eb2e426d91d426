// The macro goes on an impl block.
pub struct User;

#[outbox::message_controller(model = User, table = users)]
pub struct UsersController;

fn main() {}
