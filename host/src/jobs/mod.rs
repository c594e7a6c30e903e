//! The job table: cron and one-shot jobs, each with its next fire time in a
//! time-ordered queue, persisted through the job store. What fires them and
//! runs them is a trigger (`triggers::jobs`); what a guest may schedule is a
//! capability (`capabilities::scheduler`).

mod scheduler;
mod table;

pub use scheduler::{
    Fired, JobPolicy, RunNowError, ScheduleError, Scheduler, ServiceNow, SharedJob,
};
pub use table::JobKey;
