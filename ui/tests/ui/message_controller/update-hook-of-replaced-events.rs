// `before_update` also serves `created`, unless `created` is replaced too.
use outbox::{Context, HandlerError, Message};

pub struct User;
pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {
    async fn created(&self, _ctx: &mut Context<'_>, _msg: &Message) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn updated(&self, _ctx: &mut Context<'_>, _msg: &Message) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn before_update(&self, _ctx: &mut Context<'_>, user: User) -> Result<User, HandlerError> {
        Ok(user)
    }
}

fn main() {}
