// A topic follows Kafka's rule for names.
pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users, topic = "accounts/eu")]
impl UsersController {}

fn main() {}
