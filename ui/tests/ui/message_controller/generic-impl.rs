// A controller is one concrete type.
pub struct User;
pub struct Wrapper<T>(T);

#[outbox::message_controller(model = User, table = users)]
impl<T> Wrapper<T> {}

fn main() {}
