// Every mistake in one controller is reported in one compile.
use outbox::{Context, HandlerError, Message};

pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, tabel = users, strict, strict, gap = "halt")]
impl UsersController {
    async fn befor_update(&self, _ctx: &mut Context<'_>, user: User) -> Result<User, HandlerError> {
        Ok(user)
    }

    fn after_update(&self, _ctx: &Context<'_>, _user: User) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn before_destroy(&self, _ctx: &mut Context<'_>, _id: &i64) {}

    #[on("updated")]
    async fn user_updated(&self, _ctx: &mut Context<'_>, _msg: &Message) -> Result<(), HandlerError> {
        Ok(())
    }

    #[on("Password Reset")]
    async fn password_reset(&self, _ctx: &mut Context<'_>, _msg: &Message) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}
