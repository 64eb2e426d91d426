// One custom event, one handler.
use outbox::{Context, HandlerError, Message};

pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {
    #[on("password_reset")]
    async fn password_reset(&self, _ctx: &mut Context<'_>, _msg: &Message) -> Result<(), HandlerError> {
        Ok(())
    }

    #[on("password_reset")]
    async fn audit_reset(&self, _ctx: &mut Context<'_>, _msg: &Message) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}
