// The macro writes the `Controller` impl itself: it goes on an inherent impl.
pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl Default for UsersController {
    fn default() -> Self {
        UsersController
    }
}

fn main() {}
