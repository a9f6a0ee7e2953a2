//! The grammar's tests: every command family, typed errors, no word of a bad line echoed.

use super::*;

#[test]
fn parses_every_command_family() {
    assert_eq!(parse("vm list"), Ok(Command::VmList { host: None }));
    assert_eq!(
        parse("/vm list --host hv01"),
        Ok(Command::VmList {
            host: Some("hv01".into())
        })
    );
    assert_eq!(
        parse("vm shutdown web01"),
        Ok(Command::VmPower {
            name: "web01".into(),
            action: PowerAction::Shutdown
        })
    );
    assert_eq!(
        parse("vm delete web01 --force --delete-disks"),
        Ok(Command::VmDelete {
            name: "web01".into(),
            delete_disks: true,
            force: true
        })
    );
    assert_eq!(
        parse("disk resize web01 d1 80"),
        Ok(Command::DiskResize {
            vm: "web01".into(),
            disk: "d1".into(),
            size_gb: 80
        })
    );
    assert_eq!(
        parse("jobs --mine"),
        Ok(Command::Jobs {
            mine: true,
            host: None,
            limit: None,
            all: false
        })
    );
    assert_eq!(
        parse("jobs --limit 3 --host hv01"),
        Ok(Command::Jobs {
            mine: false,
            host: Some("hv01".into()),
            limit: Some(3),
            all: false
        })
    );
    assert_eq!(
        parse("jobs --all"),
        Ok(Command::Jobs {
            mine: false,
            host: None,
            limit: None,
            all: true
        })
    );
    assert!(matches!(
        parse("jobs --limit 0"),
        Err(CommandParseError::InvalidNumber { .. })
    ));
    assert_eq!(parse("HOSTS"), Ok(Command::Hosts));
    assert_eq!(parse("approve"), Ok(Command::Approve { id: None }));
    assert_eq!(
        parse("approve 1a2b"),
        Ok(Command::Approve {
            id: Some("1a2b".into())
        })
    );
    assert_eq!(
        parse("reject abc too big"),
        Ok(Command::Reject {
            id: "abc".into(),
            reason: Some("too big".into())
        })
    );
}

#[test]
fn parses_the_update_remove_and_retry_commands() {
    assert_eq!(
        parse("vm update web01 gb_ram=8 CPU_CORES=4"),
        Ok(Command::VmUpdate {
            name: "web01".into(),
            gb_ram: Some(8),
            cpu_cores: Some(4)
        })
    );
    assert_eq!(
        parse("vm update web01 cpu_cores=2"),
        Ok(Command::VmUpdate {
            name: "web01".into(),
            gb_ram: None,
            cpu_cores: Some(2)
        })
    );
    assert_eq!(
        parse("vm update web01"),
        Err(CommandParseError::MissingArgument {
            command: CommandName::VmUpdate,
            arg: "gb_ram=N or cpu_cores=N"
        })
    );
    assert_eq!(
        parse("vm update web01 gb_ram=lots"),
        Err(CommandParseError::InvalidNumber { arg: "gb_ram" })
    );
    assert_eq!(
        parse("vm update web01 notes=x"),
        Err(CommandParseError::UnknownField {
            command: CommandName::VmUpdate,
            position: 2
        })
    );
    assert_eq!(
        parse("vm update web01 8"),
        Err(CommandParseError::UnknownField {
            command: CommandName::VmUpdate,
            position: 2
        })
    );
    assert_eq!(
        parse("disk remove web01 data.vhdx"),
        Ok(Command::DiskRemove {
            vm: "web01".into(),
            disk: "data.vhdx".into(),
            boot_disk: false
        })
    );
    assert_eq!(
        parse("disk remove web01 os.vhdx --boot-disk"),
        Ok(Command::DiskRemove {
            vm: "web01".into(),
            disk: "os.vhdx".into(),
            boot_disk: true
        })
    );
    assert_eq!(
        parse("disk remove web01"),
        Err(CommandParseError::MissingArgument {
            command: CommandName::DiskRemove,
            arg: "DISK"
        })
    );
    assert_eq!(
        parse("nic remove web01"),
        Ok(Command::NicRemove {
            vm: "web01".into(),
            nic: None
        })
    );
    assert_eq!(
        parse("nic remove web01 \"Network Adapter 2\""),
        Ok(Command::NicRemove {
            vm: "web01".into(),
            nic: Some("Network Adapter 2".into())
        })
    );
    assert_eq!(
        parse("nic remove web01 a b"),
        Err(CommandParseError::UnexpectedArgument {
            command: CommandName::NicRemove,
            position: 3
        })
    );
    assert_eq!(
        parse("retry 1a2b"),
        Ok(Command::Retry { id: "1a2b".into() })
    );
    assert_eq!(
        parse("retry"),
        Err(CommandParseError::MissingArgument {
            command: CommandName::Retry,
            arg: "ID"
        })
    );
}

#[test]
fn deploy_takes_a_form_and_quoted_fields() {
    let Ok(Command::Deploy { form, fields }) =
        parse(r#"deploy managed vm_name=web01 notes="two words""#)
    else {
        panic!("not a deploy")
    };
    assert_eq!(form, DeployForm::Managed);
    assert_eq!(fields["notes"], "two words");
    assert!(matches!(
        parse("deploy vm_name=a"),
        Ok(Command::Deploy {
            form: DeployForm::Managed,
            ..
        })
    ));
    assert!(matches!(
        parse("deploy vm vm_name=a"),
        Ok(Command::Deploy {
            form: DeployForm::Vm,
            ..
        })
    ));
    assert_eq!(
        parse("deploy vm vm_name"),
        Err(CommandParseError::InvalidField { position: 2 })
    );
}

#[test]
fn errors_are_typed() {
    assert_eq!(parse("  "), Err(CommandParseError::Empty));
    assert_eq!(
        parse("vm frobnicate x"),
        Err(CommandParseError::Unknown { family: Some("vm") })
    );
    assert_eq!(
        parse("vm show"),
        Err(CommandParseError::MissingArgument {
            command: CommandName::VmShow,
            arg: "NAME"
        })
    );
    assert_eq!(
        parse("disk add web01 lots"),
        Err(CommandParseError::InvalidNumber { arg: "SIZE_GB" })
    );
    assert_eq!(
        parse("vm delete web01 --now"),
        Err(CommandParseError::UnknownFlag {
            command: CommandName::VmDelete,
            position: 2
        })
    );
    assert_eq!(
        parse("hosts extra"),
        Err(CommandParseError::UnexpectedArgument {
            command: CommandName::Hosts,
            position: 1
        })
    );
    assert_eq!(
        parse("deploy x=\"y"),
        Err(CommandParseError::UnterminatedQuote)
    );
}

/// Issue 16, finding 3: no error of a line that does not parse carries a word of it.
#[test]
fn errors_never_carry_the_words_of_the_line() {
    let secret = "Hunter2secret";
    for line in [
        format!("deplyo guest_la_pw={secret} vm_name=t1"),
        format!("{secret} guest_la_pw={secret}"),
        format!("deploy vm_name=t1 guest_la_pw= {secret}"),
        format!("deploy {secret}"),
        format!("deploy vm_name=t1 ={secret}"),
        format!("disk add web01 {secret}"),
        format!("vm delete web01 --{secret}"),
        format!("vm show web01 {secret}"),
        format!("jobs --limit {secret}"),
        format!("vm update web01 gb_ram={secret}"),
        format!("vm update web01 {secret}=4"),
        format!("vm update web01 {secret}"),
    ] {
        let e = parse(&line).expect_err(&line);
        let shown = format!("{e} {e:?}").to_ascii_lowercase();
        assert!(!shown.contains("hunter2"), "{line}: {shown}");
    }
    assert_eq!(
        parse("deplyo guest_la_pw=X vm_name=t1"),
        Err(CommandParseError::Unknown { family: None })
    );
    assert_eq!(
        parse("deploy vm_name=t1 guest_la_pw= X"),
        Err(CommandParseError::InvalidField { position: 3 })
    );
}
