//! Parsing of `qstat -xml` output.

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::batch_system::error::SgeError;
use crate::batch_system::job::{JobId, JobState, JobStatus};

/// Parses the output of `qstat -xml` into one [`JobStatus`] per `<job_list>`.
///
/// Both sections are read: `<queue_info>` (jobs placed in a queue: running,
/// transferring, suspended, ...) and `<job_info>` (pending jobs). Jobs come
/// back in document order. Each job's state is its `<state>` code mapped by
/// [`JobState::from_sge_code`]; its queue is the `<queue_name>` without the
/// host part (`q_gpu@vm` becomes `q_gpu`; empty means `None`). Array-job
/// task ranges (`<tasks>`) are ignored: the id is the job number.
///
/// Malformed XML (mismatched or unclosed tags, bad escapes, a root other
/// than `<job_info>`) and a `<job_list>` without `<JB_job_number>` or
/// `<state>` give [`SgeError::QstatXml`]; this function never panics.
pub fn parse_qstat_xml(xml: &str) -> Result<Vec<JobStatus>, SgeError> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut parser = Parser::default();
    loop {
        let position = reader.buffer_position();
        let event = reader.read_event().map_err(|err| SgeError::QstatXml {
            position: reader.error_position(),
            message: err.to_string(),
        })?;
        let error = |message: String| SgeError::QstatXml { position, message };
        match event {
            Event::Start(start) => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                parser.start(name).map_err(error)?;
            }
            Event::Empty(start) => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                parser.start(name).map_err(error)?;
                parser.end().map_err(error)?;
            }
            Event::End(_) => parser.end().map_err(error)?,
            Event::Text(text) => {
                let text = text
                    .unescape()
                    .map_err(|err| error(format!("bad text: {err}")))?;
                parser.text(&text).map_err(error)?;
            }
            Event::CData(data) => {
                let data = data.into_inner();
                parser
                    .text(&String::from_utf8_lossy(&data))
                    .map_err(error)?;
            }
            Event::Eof => return parser.finish().map_err(error),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
}

/// The fields of the `<job_list>` being read.
#[derive(Default)]
struct PartialJob {
    number: String,
    name: String,
    state: String,
    queue: String,
}

/// State of the parse: the open elements and the job being read.
#[derive(Default)]
struct Parser {
    stack: Vec<String>,
    seen_root: bool,
    job: Option<PartialJob>,
    jobs: Vec<JobStatus>,
}

impl Parser {
    fn start(&mut self, name: String) -> Result<(), String> {
        if self.stack.is_empty() {
            if self.seen_root {
                return Err(format!("second root element <{name}>"));
            }
            if name != "job_info" {
                return Err(format!("root element is <{name}>, expected <job_info>"));
            }
            self.seen_root = true;
        }
        if name == "job_list" {
            if self.job.is_some() {
                return Err("<job_list> inside <job_list>".to_owned());
            }
            self.job = Some(PartialJob::default());
        }
        self.stack.push(name);
        Ok(())
    }

    fn end(&mut self) -> Result<(), String> {
        let name = self
            .stack
            .pop()
            .ok_or_else(|| "closing tag without an open element".to_owned())?;
        if name == "job_list" {
            let job = self.job.take().unwrap_or_default();
            self.jobs.push(finish_job(job)?);
        }
        Ok(())
    }

    fn text(&mut self, text: &str) -> Result<(), String> {
        let Some(element) = self.stack.last() else {
            return Err(format!("text {text:?} outside the root element"));
        };
        let Some(job) = self.job.as_mut() else {
            return Ok(());
        };
        // Only direct children of <job_list> are fields.
        if self.stack.len() < 2 || self.stack[self.stack.len() - 2] != "job_list" {
            return Ok(());
        }
        let field = match element.as_str() {
            "JB_job_number" => &mut job.number,
            "JB_name" => &mut job.name,
            "state" => &mut job.state,
            "queue_name" => &mut job.queue,
            _ => return Ok(()),
        };
        field.push_str(text);
        Ok(())
    }

    fn finish(self) -> Result<Vec<JobStatus>, String> {
        if let Some(open) = self.stack.last() {
            return Err(format!("output ends inside <{open}>"));
        }
        if !self.seen_root {
            return Err("no <job_info> element (empty output?)".to_owned());
        }
        Ok(self.jobs)
    }
}

fn finish_job(job: PartialJob) -> Result<JobStatus, String> {
    let number = job.number.trim();
    if number.is_empty() {
        return Err("<job_list> without <JB_job_number>".to_owned());
    }
    let state = job.state.trim();
    if state.is_empty() {
        return Err(format!("job {number}: <job_list> without <state>"));
    }
    let queue = job.queue.trim();
    let queue = queue.split_once('@').map_or(queue, |(queue, _host)| queue);
    Ok(JobStatus {
        id: JobId::new(number),
        name: job.name.trim().to_owned(),
        state: JobState::from_sge_code(state),
        queue: (!queue.is_empty()).then(|| queue.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `qstat -xml` with 2 running and 2 pending jobs, from a real SGE 8.1.9.
    const SAMPLE: &str = r#"<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
    <job_list state="running">
      <JB_job_number>13</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_name>gpujob</JB_name>
      <JB_owner>sgeuser</JB_owner>
      <state>r</state>
      <JAT_start_time>2026-11-25T11:39:12</JAT_start_time>
      <queue_name>q_gpu@vm</queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="running">
      <JB_job_number>14</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_name>gpujob</JB_name>
      <JB_owner>sgeuser</JB_owner>
      <state>r</state>
      <JAT_start_time>2026-11-25T11:39:12</JAT_start_time>
      <queue_name>q_gpu@vm</queue_name>
      <slots>1</slots>
    </job_list>
  </queue_info>
  <job_info>
    <job_list state="pending">
      <JB_job_number>15</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_name>gpujob</JB_name>
      <JB_owner>sgeuser</JB_owner>
      <state>qw</state>
      <JB_submission_time>2026-11-25T11:39:12</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="pending">
      <JB_job_number>16</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_name>never_runs</JB_name>
      <JB_owner>sgeuser</JB_owner>
      <state>qw</state>
      <JB_submission_time>2026-11-25T11:39:12</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
  </job_info>
</job_info>
"#;

    /// `qstat -xml` with no jobs, from a real SGE 8.1.9.
    const EMPTY: &str = r#"<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
  </queue_info>
  <job_info>
  </job_info>
</job_info>
"#;

    fn status(id: u64, name: &str, state: JobState, queue: Option<&str>) -> JobStatus {
        JobStatus {
            id: JobId::from(id),
            name: name.to_owned(),
            state,
            queue: queue.map(str::to_owned),
        }
    }

    #[test]
    fn parses_reference_sample() {
        let jobs = parse_qstat_xml(SAMPLE).unwrap();
        assert_eq!(
            jobs,
            [
                status(13, "gpujob", JobState::Running, Some("q_gpu")),
                status(14, "gpujob", JobState::Running, Some("q_gpu")),
                status(15, "gpujob", JobState::Pending, None),
                status(16, "never_runs", JobState::Pending, None),
            ]
        );
    }

    #[test]
    fn parses_empty_listing() {
        assert!(parse_qstat_xml(EMPTY).unwrap().is_empty());
        assert!(parse_qstat_xml("<job_info/>").unwrap().is_empty());
    }

    #[test]
    fn error_state_and_escapes() {
        let xml = "<job_info><job_info><job_list state=\"pending\">\
            <JB_job_number>7</JB_job_number><JB_name>a&amp;b</JB_name>\
            <state>Eqw</state><queue_name/></job_list></job_info></job_info>";
        assert_eq!(
            parse_qstat_xml(xml).unwrap(),
            [status(7, "a&b", JobState::Failed("Eqw".into()), None)]
        );
    }

    #[test]
    fn queue_without_host_is_kept() {
        let xml = "<job_info><queue_info><job_list><JB_job_number>8</JB_job_number>\
            <state>r</state><queue_name>q_1day</queue_name></job_list></queue_info></job_info>";
        assert_eq!(
            parse_qstat_xml(xml).unwrap()[0].queue.as_deref(),
            Some("q_1day")
        );
    }

    fn parse_error(xml: &str) -> String {
        match parse_qstat_xml(xml) {
            Err(err @ SgeError::QstatXml { .. }) => err.to_string(),
            other => panic!("{xml:?}: expected QstatXml error, got {other:?}"),
        }
    }

    #[test]
    fn malformed_inputs_are_typed_errors() {
        let cases: &[(&str, &str)] = &[
            ("", "no <job_info>"),
            ("   \n", "no <job_info>"),
            ("error: commlib error: got select error", "outside the root"),
            ("<job_info><queue_info></job_info>", ""),
            ("<job_info><job_list>", "ends inside"),
            (&SAMPLE[..SAMPLE.len() / 2], "not closed"),
            ("<other/>", "expected <job_info>"),
            ("<job_info/><job_info/>", "second root"),
            (
                "<job_info><job_list><state>r</state></job_list></job_info>",
                "JB_job_number",
            ),
            (
                "<job_info><job_list><JB_job_number>1</JB_job_number></job_list></job_info>",
                "without <state>",
            ),
            (
                "<job_info><job_list><job_list></job_list></job_list></job_info>",
                "inside <job_list>",
            ),
            ("<job_info><JB_name>&bogus;</JB_name></job_info>", ""),
            ("<job_info></job_info></job_info>", ""),
            ("<job_info attr=\"unterminated></job_info>", ""),
        ];
        for (xml, needle) in cases {
            let msg = parse_error(xml);
            assert!(msg.contains(needle), "{xml:?}: {msg}");
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let complete = SAMPLE.trim_end().len();
        for end in 0..complete {
            assert!(parse_qstat_xml(&SAMPLE[..end]).is_err(), "{end}");
        }
        assert_eq!(parse_qstat_xml(&SAMPLE[..complete]).unwrap().len(), 4);
    }
}
