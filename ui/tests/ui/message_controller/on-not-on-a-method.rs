// `#[on]` marks methods only.
pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {
    #[on("password_reset")]
    pub const RESET: &'static str = "password_reset";
}

fn main() {}
