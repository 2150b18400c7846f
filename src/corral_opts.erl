%% @doc The one place where Corral's options are validated, and where every
%% decision that follows from them is taken.
%%
%% Every entry point passes its command, arguments and options through
%% {@link normalize/4} with its context (`open', `cmd', `stream',
%% `process', `daemon'); the result, a {@link normalized()} map, is all the
%% entry point needs: the spawner's request, and what to do with stderr,
%% stdin input, the exit status and lines (and, for a daemon, how lines are
%% logged, its readiness check and its crash-loop delay). Errors name the option and the value,
%% before any system call is made:
%%
%% <ul>
%% <li>`{bad_option, Name, Value}': a value of the wrong type or range
%%     (for `env', `Value' is the offending `{Key, Value}' entry);</li>
%% <li>`{unknown_option, Name}': not an option of this entry point;</li>
%% <li>`enoent': the executable cannot be found.</li>
%% </ul>
%%
%% Aliases, accepted everywhere: the MuonTrap names `delay_to_sigkill'
%% (= `kill_timeout') and `stdio_window' (= `window'), listed by
%% {@link aliases/0}; the values `{stderr, stdout}' (= `redirect'),
%% `{stderr, null}' (= `discard'), `{stdout, discard}' (= `null'), listed
%% by {@link value_aliases/0}; `{stderr_to_stdout, true}' (System.cmd's) is
%% `{stderr, redirect}'; `{stderr, pipe}' is the entry point's default
%% reading mode. When an option and its alias are both given, the
%% canonical name wins.
-module(corral_opts).

-export([
    normalize/4,
    normalize/5,
    keys/1,
    aliases/0,
    value_aliases/0,
    rlimit_resources/0,
    signal_number/1,
    spawn_keys/0,
    cmd_keys/0,
    daemon_keys/0,
    log_level/1
]).

-export_type([
    option/0,
    options/0,
    context/0,
    normalized/0,
    request/0,
    stderr/0,
    input/0,
    sink/0,
    signal/0,
    log_level/0,
    ready/0
]).

-define(DEFAULT_WINDOW, 1048576).
-define(DEFAULT_KILL_TIMEOUT, 5000).
%% The child's pipes are enlarged to this (F_SETPIPE_SZ) so that one read or
%% write, and one message, carries up to a quarter MiB; 0 keeps the kernel's.
-define(DEFAULT_PIPE_SIZE, 262144).
%% How long the spawner may hold back the start report of a cmd/3 child
%% without input (see start_report/3).
-define(CMD_REPORT_DELAY_MS, 5).
-define(DEFAULT_MAX_LINE, 65536).
%% A daemon logs a line whole up to this size; beyond, in pieces.
-define(DEFAULT_DAEMON_MAX_LINE, 1048576).
-define(DEFAULT_READY_TIMEOUT, 10000).
%% Upper bounds, so that a value the driver, the spawner or a VM timer
%% cannot hold is refused here, naming the option, rather than failing
%% later as `{einval, decode}', `{einval, spawn}' or a badarg in a timer:
%% the window travels as 64 bits unsigned, the kill timeout as a C long,
%% the pipe size as a C int, and a VM timer takes at most about 2^43 ms
%% (2^42 ms is 139 years).
-define(MAX_WINDOW, 16#FFFFFFFFFFFFFFFF).
-define(MAX_KILL_TIMEOUT, 16#7FFFFFFFFFFFFFFF).
-define(MAX_PIPE_SIZE, 16#7FFFFFFF).
-define(MAX_TIMER, (1 bsl 42)).

%% A signal by name (`sigterm' or `term', ...) or by number.
-type signal() :: atom() | 1..64.

%% Text: a binary, a string (chardata) or an atom; never with a NUL byte.
-type text() :: iodata() | atom().

%% The sink an input fun writes with (streams): `ok', `{error, epipe}' once
%% the child closed its stdin (`ok' with `ignore_epipe'), `{error, closed}'
%% once the child is gone.
-type sink() :: fun((iodata()) -> ok | {error, atom()}).

%% Every option, with the type of its value. Which entry point takes which
%% is {@link keys/1}.
-type option() ::
    %% -- the child (every entry point) --
    %% Working directory; relative to the VM's current one. Default: the VM's.
    {cd, text()}
    %% Variables to set (`nil' or `false' unsets one), over the VM's own
    %% environment: a list or a map of {Key, Value}.
    | {env, [{text(), text() | nil | false}] | #{text() => text() | nil | false}}
    %% Start from an empty environment instead of the VM's. Default false.
    | {clear_env, boolean()}
    %% argv[0] of the child. Default: the resolved path.
    | {arg0, text()}
    %% `pipe' (default) or `null' (/dev/null).
    | {stdin, pipe | null}
    %% `pipe' (default), `null' or `discard'.
    | {stdout, pipe | null | discard}
    %% What becomes of stderr; see {@link stderr()} for the entry points'
    %% defaults.
    | {stderr, pipe | consume | inherit | redirect | stdout | discard | null}
    %% System.cmd's: true is `{stderr, redirect}'.
    | {stderr_to_stdout, boolean()}
    %% ms between the stop signal and SIGKILL. Default 5000; at most 2^63 - 1.
    | {kill_timeout, non_neg_integer()}
    %% MuonTrap's name for kill_timeout.
    | {delay_to_sigkill, non_neg_integer()}
    %% The signal that stops the child. Default sigterm.
    | {stop_signal, signal()}
    %% Unacknowledged output bytes the driver reads ahead. Default 1 MiB;
    %% at most 2^64 - 1.
    | {window, pos_integer()}
    %% MuonTrap's name for window.
    | {stdio_window, pos_integer()}
    %% Size the child's pipes are set to (F_SETPIPE_SZ); 0 keeps the
    %% kernel's. Default 256 KiB; at most 2^31 - 1.
    | {pipe_size, non_neg_integer()}
    %% The port's parallelism flag, as with System.cmd/3. Default: the VM's.
    | {parallelism, boolean()}
    %% -- the child's identity and limits (every entry point; nil: not set) --
    %% The user the child runs as: a uid or a user name. Without `gid' the
    %% user's primary group, without `groups' the user's groups (as su and
    %% runuser set them). Needs privilege (CAP_SETUID, CAP_SETGID).
    | {uid, id() | nil}
    %% The group the child runs as: a gid or a group name.
    | {gid, id() | nil}
    %% The supplementary groups, replacing the VM's (setgroups).
    | {groups, [id()] | nil}
    %% Resource limits (setrlimit), a map or a list: `{Resource, Limit}' with
    %% Limit a limit for both the soft and the hard one, or `{Soft, Hard}';
    %% a limit is a non-negative integer or `infinity'. Resources:
    %% {@link rlimit_resources/0}.
    | {rlimits, #{atom() => rlimit()} | [{atom(), rlimit()}]}
    %% The nice value, -20..19 (below the VM's needs privilege).
    | {nice, -20..19 | nil}
    %% The file mode creation mask, 0..8#777.
    | {umask, 0..8#777 | nil}
    %% PR_SET_NO_NEW_PRIVS: execve never grants privileges (setuid bits,
    %% file capabilities). Default false.
    | {no_new_privs, boolean()}
    %% -- cgroups (see cgroup_request/2) --
    %% Limits, by MuonTrap's keys or raw v2 file names.
    | {cgroup, #{atom() | text() => term()}}
    %% The child's leaf goes beneath this group (relative to the VM's own
    %% group in each hierarchy; absolute from the hierarchy's root).
    | {cgroup_base, text()}
    %% The child's leaf itself, made for it and removed after.
    | {cgroup_path, text()}
    %% MuonTrap 1's: controllers to place the child in, and
    %% `{Controller, File, Value}' settings.
    | {cgroup_controllers, [text()]}
    | {cgroup_sets, [{text(), text(), text() | integer()}]}
    %% -- open, process and daemon (an owner that lives as long as the child) --
    %% Subscribe to the child's memory.events counts while it runs: `true'
    %% (every count its memory hierarchy has), `false' (default), or a list
    %% of keys (low, high, max, oom, oom_kill, oom_group_kill). Needs a
    %% memory cgroup: a memory key in `cgroup' (such as memory_max), a
    %% memory file in `cgroup_sets' or "memory" in `cgroup_controllers'. The
    %% owner gets `{Port, {memory_events, #{Key => Count}}}' (see corral).
    | {memory_events, boolean() | [memory_event()]}
    %% -- cmd and stream --
    %% Written to stdin, which is then closed: iodata, or a fun of one
    %% argument run in a helper process (cmd: given the port, it writes with
    %% corral:write/2; stream: given a sink()).
    | {input, iodata() | fun((port()) -> term()) | fun((sink()) -> term()) | nil}
    %% -- cmd --
    %% ms until the child's tree is stopped and cmd returns `timeout'; at
    %% most 2^42 (as are `ready_timeout' and `min_uptime': a VM timer's
    %% limit is near 2^43).
    | {timeout, pos_integer() | infinity | nil}
    %% Output bytes kept; beyond, the child is stopped. Default infinity.
    | {max_output_size, pos_integer() | infinity | nil}
    %% Return stderr as the output, discard stdout. Default false.
    | {capture_stderr_only, boolean()}
    %% Fun(Chunk, Acc) folded over the output instead of collecting it.
    | {fold, {fun((binary(), Acc :: term()) -> term()), term()}}
    %% -- stream --
    %% Leave `{error, epipe}' out and make the sink return ok. Default false.
    | {ignore_epipe, boolean()}
    %% -- stream and process --
    %% Elements are lines (see corral_lines). Default false.
    | {lines, boolean()}
    %% Longest line text before it is cut in pieces. Default 65536
    %% (daemon: 1 MiB).
    | {max_line_length, pos_integer()}
    %% -- daemon (Corral.Daemon) --
    %% The level output is logged at; `nil', `none' or `false': not logged
    %% (and stdout is /dev/null). Default nil, as MuonTrap's.
    | {log_output, log_level() | nil | none | false}
    %% The level of stderr's lines; `none': stderr is /dev/null. Default:
    %% log_output's.
    | {log_stderr_level, log_level() | nil | none | false}
    %% Put before every logged line. Default: the command, then ": ".
    | {log_prefix, text()}
    %% Fun(Line) -> Line applied to every line (after invalid UTF-8 was
    %% replaced) before it is logged or given to logger_fun.
    | {log_transform, fun((binary()) -> iodata())}
    %% Logger metadata of every logged line.
    | {logger_metadata, [{atom(), term()}]}
    %% Called with every line instead of logging it: Fun(Line), or
    %% apply(M, F, [Line | A]).
    | {logger_fun, fun((binary()) -> term()) | {module(), atom(), list()}}
    %% Fun(Status) -> the daemon's exit reason for a status other than 0.
    %% Default {exit_status, Status}.
    | {exit_status_to_reason, fun((pos_integer()) -> term())}
    %% Run before the program is started; what it raises fails the start.
    | {wait_for, fun(() -> term())}
    %% Checked before start returns: `{line, Regex}' (a line of output
    %% matching it, an Elixir Regex, a re pattern or a compiled one),
    %% `{tcp, Port}' or `{tcp, Host, Port}' (a connection accepted), or a
    %% 0-arity fun that returns true (or ok) once ready.
    | {ready, {line, term()} | {tcp, inet:port_number()} | {tcp, term(), inet:port_number()}
        | fun(() -> term())}
    %% ms the ready check may take. Default 10000.
    | {ready_timeout, pos_integer()}
    %% ms after the program's start before its exit is reported: a program
    %% that fails at once ends its daemon no faster than this. Default 0.
    | {min_uptime, non_neg_integer()}.

-type options() :: [option()] | #{atom() => term()}.

%% A memory.events key. On cgroup v1 only max (memory.failcnt), oom (OOM
%% notifications) and oom_kill exist.
-type memory_event() :: low | high | max | oom | oom_kill | oom_group_kill.

%% A user or group: a number (0..4294967294) or a name, which the spawner
%% looks up.
-type id() :: 0..4294967294 | text().

%% A resource limit: both the soft and the hard limit, or `{Soft, Hard}'.
-type rlimit_value() :: non_neg_integer() | infinity.
-type rlimit() :: rlimit_value() | {rlimit_value(), rlimit_value()}.

%% The entry point: its accepted keys, its defaults and the meaning of the
%% `stderr' values depend on it. A list of keys is the `open' context
%% restricted to those keys.
-type context() :: open | cmd | stream | process | daemon.

%% A Logger level (`warn' is taken for `warning').
-type log_level() :: emergency | alert | critical | error | warning | notice | info | debug.

%% What re:compile/2 returns: OTP 25's re defines mp() without exporting it.
-type compiled_re() :: {re_pattern, term(), term(), term(), term()}.

%% The daemon's readiness check, decided: `none', a line matching a
%% compiled pattern, a TCP connection, or a fun polled until true or ok.
-type ready() ::
    none
    | {line, compiled_re()}
    | {tcp, inet:hostname() | inet:ip_address(), inet:port_number()}
    | {call, fun(() -> term())}.

%% What becomes of the child's stderr, decided once for every entry point:
%% <ul>
%% <li>`inherit': the child writes to the VM's own fd 2 (cmd's default, as
%%     with System.cmd/3; a daemon's that does not log; `{stderr, inherit}'
%%     anywhere);</li>
%% <li>`forward': read by Corral and copied to `standard_error', so that
%%     group leaders and capture_io see it (the default of stream and
%%     process; `pipe' there, and `consume' in cmd);</li>
%% <li>`capture': read and delivered to the caller: `{data, stderr, _}'
%%     messages (open), `{stderr, Bin}' elements (stream, with `consume'),
%%     `read_stderr' (process, with `consume'), the output (cmd, with
%%     `capture_stderr_only'), logged (daemon, the default when stderr is
%%     logged: see `log_stderr_level');</li>
%% <li>`merge': into stdout, by the OS (`redirect', `stdout',
%%     `{stderr_to_stdout, true}');</li>
%% <li>`discard': /dev/null (`discard', `null').</li>
%% </ul>
-type stderr() :: inherit | forward | capture | merge | discard.

%% How stdin is fed (see corral_feed): `none': closed at once (cmd: the
%% child's stdin is /dev/null); `{data, IoData}'; `{call, Fun}': Fun(Port)
%% run in a helper, then stdin is closed (cmd); `{sink, Fun}': Fun(Sink),
%% likewise (stream).
-type input() ::
    none
    | {data, iodata()}
    | {call, fun((port()) -> term())}
    | {sink, fun((sink()) -> term())}.

%% The spawner's request (see c_src/spawner/options.cpp).
-type request() :: #{
    path := binary(),
    argv := [binary(), ...],
    env := [binary()],
    stdin := pipe | null,
    stdout := pipe | null,
    stderr := pipe | stdout | null | inherit,
    kill_timeout := non_neg_integer(),
    stop_signal := 1..64,
    pipe_size := non_neg_integer(),
    cd => binary(),
    uid => 0..4294967294 | binary(),
    gid => 0..4294967294 | binary(),
    groups => [0..4294967294 | binary()],
    rlimits => [{atom(), rlimit_value(), rlimit_value()}],
    nice => -20..19,
    umask => 0..8#777,
    no_new_privs => true,
    cgroup => cgroup_request(),
    memory_events => all | [memory_event(), ...],
    report_delay => 1..1000
}.

%% The child's cgroups: every cgroup option in one shape. `settings' is a
%% flat list of cgroup v2 file names and values, `[File, Value, ...]'.
-type cgroup_request() :: #{
    base := binary(),
    path := binary(),
    controllers := [binary()],
    settings := [binary()]
}.

%% The result of {@link normalize/4}. Keys:
%% <ul>
%% <li>`context': the entry point it was normalized for;</li>
%% <li>`request': what the driver sends the spawner;</li>
%% <li>`window': the credit window in bytes;</li>
%% <li>`port_opts': extra open_port/2 options (`parallelism');</li>
%% <li>`stderr': {@link stderr()}, the decision on stderr;</li>
%% <li>`output': the stream cmd collects: `stdout', or `stderr' with
%%     `capture_stderr_only';</li>
%% <li>`input': {@link input()};</li>
%% <li>`ignore_epipe': whether an EPIPE on stdin is hidden;</li>
%% <li>`lines': `false', or the maximum line length when elements are
%%     lines;</li>
%% <li>`timeout', `max_output_size': cmd's limits (`infinity' when
%%     unset);</li>
%% <li>`fold': cmd's `{Fun, Acc0}', or `undefined'.</li>
%% </ul>
%% The daemon context adds (see {@link daemon_keys/0}):
%% <ul>
%% <li>`log': `#{stdout => Level | none, stderr => Level | none}', the
%%     level of each stream's lines (`none': not logged; a stream not
%%     logged is not read: /dev/null, or the VM's stderr);</li>
%% <li>`log_prefix' (a binary), `log_transform' and `logger_fun'
%%     (`undefined' when not given), `logger_metadata' (a list);</li>
%% <li>`exit_status_to_reason': a fun of one argument;</li>
%% <li>`wait_for': `undefined' or a 0-arity fun;</li>
%% <li>`ready': {@link ready()}; `ready_timeout': ms;</li>
%% <li>`min_uptime': ms.</li>
%% </ul>
%% A daemon's `lines' is always its maximum line length: it logs lines.
-type normalized() :: #{
    context := context(),
    request := request(),
    window := pos_integer(),
    port_opts := [{parallelism, boolean()}],
    stderr := stderr(),
    output := stdout | stderr,
    input := input(),
    ignore_epipe := boolean(),
    lines := false | pos_integer(),
    timeout := pos_integer() | infinity,
    max_output_size := pos_integer() | infinity,
    fold := undefined | {fun((binary(), term()) -> term()), term()},
    cgroup_options := map(),
    log => #{stdout := log_level() | none, stderr := log_level() | none},
    log_prefix => binary(),
    log_transform => undefined | fun((binary()) -> iodata()),
    logger_metadata => [{atom(), term()}],
    logger_fun => undefined | fun((binary()) -> term()) | {module(), atom(), list()},
    exit_status_to_reason => fun((pos_integer()) -> term()),
    wait_for => undefined | fun(() -> term()),
    ready => ready(),
    ready_timeout => pos_integer(),
    min_uptime => non_neg_integer()
}.

%%% ------------------------------------------------------------------------
%%% Tables

%% @doc Options that shape the child itself, accepted by every entry point.
-spec spawn_keys() -> [atom()].
spawn_keys() ->
    [
        cd,
        env,
        clear_env,
        arg0,
        stdin,
        stdout,
        stderr,
        stderr_to_stdout,
        kill_timeout,
        delay_to_sigkill,
        stop_signal,
        window,
        stdio_window,
        pipe_size,
        parallelism,
        uid,
        gid,
        groups,
        rlimits,
        nice,
        umask,
        no_new_privs,
        cgroup,
        cgroup_base,
        cgroup_path,
        cgroup_controllers,
        cgroup_sets
    ].

%% @doc Options that only cmd/3 takes. (`into' is Elixir's: Corral.cmd/3
%% turns it into `fold' before calling corral:cmd/3.)
-spec cmd_keys() -> [atom()].
cmd_keys() ->
    [timeout, input, max_output_size, capture_stderr_only, fold].

%% @doc Options that only a daemon (Corral.Daemon) takes.
-spec daemon_keys() -> [atom()].
daemon_keys() ->
    [
        log_output,
        log_stderr_level,
        log_prefix,
        log_transform,
        logger_metadata,
        logger_fun,
        capture_stderr_only,
        max_line_length,
        exit_status_to_reason,
        wait_for,
        ready,
        ready_timeout,
        min_uptime
    ].

%% @doc Every option an entry point accepts.
-spec keys(context()) -> [atom()].
keys(open) -> spawn_keys() ++ [memory_events];
keys(cmd) -> spawn_keys() ++ cmd_keys();
keys(stream) -> spawn_keys() ++ [input, ignore_epipe, lines, max_line_length];
keys(process) -> spawn_keys() ++ [lines, max_line_length, memory_events];
keys(daemon) -> spawn_keys() ++ daemon_keys() ++ [memory_events].

%% @doc Option aliases, `{Alias, Canonical}': the MuonTrap names.
-spec aliases() -> [{atom(), atom()}].
aliases() ->
    [{delay_to_sigkill, kill_timeout}, {stdio_window, window}].

%% @doc Value aliases, `{Option, Alias, Canonical}': `{stderr, stdout}' is
%% `{stderr, redirect}', and so on. (`{stderr_to_stdout, true}' is also
%% `{stderr, redirect}'; `{capture_stderr_only, true}' is `{stderr, capture}'
%% with stdout discarded.)
-spec value_aliases() -> [{atom(), atom(), atom()}].
value_aliases() ->
    [{stderr, stdout, redirect}, {stderr, null, discard}, {stdout, discard, null}].

%%% ------------------------------------------------------------------------
%%% normalize

%% @doc Validates `Opts' for an entry point and returns every setting the
%% entry point needs; see {@link normalized()}.
-spec normalize(text(), [text()], options(), context() | [atom()]) ->
    {ok, normalized()} | {error, term()}.
normalize(Cmd, Args, Opts, Context) when is_atom(Context) ->
    normalize(Cmd, Args, Opts, Context, keys(Context));
normalize(Cmd, Args, Opts, Allowed) when is_list(Allowed) ->
    normalize(Cmd, Args, Opts, open, Allowed).

%% @doc Like {@link normalize/4}, accepting exactly the keys `Allowed'.
-spec normalize(text(), [text()], options(), context(), [atom()]) ->
    {ok, normalized()} | {error, term()}.
normalize(Cmd, Args, Opts, Context, Allowed) ->
    try
        {ok, do_normalize(Cmd, Args, to_list(Opts), Context, Allowed)}
    catch
        throw:{corral_opts, Reason} -> {error, Reason}
    end.

to_list(Opts) when is_map(Opts) -> maps:to_list(Opts);
to_list(Opts) when is_list(Opts) ->
    %% An improper list would otherwise crash a lists function later.
    case proper(Opts) of
        true -> Opts;
        false -> bad(options, Opts)
    end;
to_list(Opts) -> bad(options, Opts).

-spec bad(atom(), term()) -> no_return().
bad(Name, Value) -> throw({corral_opts, {bad_option, Name, Value}}).

proper([]) -> true;
proper([_ | T]) -> proper(T);
proper(_) -> false.

check_keys(Opts, Allowed) ->
    lists:foreach(
        fun
            ({K, _}) when is_atom(K) ->
                lists:member(K, Allowed) orelse throw({corral_opts, {unknown_option, K}});
            (Other) ->
                bad(options, Other)
        end,
        Opts
    ).

%% The value of an option, or of its alias, or the default.
get(Opts, Key, Default) ->
    case lists:keyfind(Key, 1, Opts) of
        {Key, V} ->
            V;
        false ->
            case [A || {A, K} <- aliases(), K =:= Key] of
                [Alias] -> proplists:get_value(Alias, Opts, Default);
                [] -> Default
            end
    end.

do_normalize(Cmd, Args, Opts, Context, Allowed) ->
    check_keys(Opts, Allowed),
    Get = fun(K, Default) -> get(Opts, K, Default) end,
    Path = executable(Cmd),
    ArgBins = args(Args),
    Arg0 =
        case Get(arg0, undefined) of
            undefined -> Path;
            A0 -> text(arg0, A0)
        end,
    CaptureStderrOnly = bool(capture_stderr_only, Get(capture_stderr_only, false)),
    Log = log_levels(Context, Get, CaptureStderrOnly),
    %% As with System.cmd/3: the port's `parallelism' flag; the VM's default
    %% (+spp) when not given.
    PortOpts =
        case Get(parallelism, undefined) of
            undefined -> [];
            P -> [{parallelism, bool(parallelism, P)}]
        end,
    Stderr =
        case {bool(stderr_to_stdout, Get(stderr_to_stdout, false)), CaptureStderrOnly} of
            {true, _} -> merge;
            {false, true} -> capture;
            {false, false} ->
                StderrLevel = Get(log_stderr_level, default),
                stderr_mode(Context, Log, StderrLevel, canonical(stderr, Get(stderr, default)))
        end,
    Stdout =
        case {CaptureStderrOnly, Log} of
            {true, _} -> null;
            %% A daemon reads only what it logs: the rest is not even piped.
            {false, #{stdout := none}} -> null;
            {false, _} -> stdout_mode(canonical(stdout, Get(stdout, pipe)))
        end,
    Input = input(Context, Get(input, undefined)),
    Stdin =
        case {Context, Input} of
            %% cmd without input: /dev/null (EOF at once, as a closed pipe
            %% would be), one pipe fewer to make, pass and close.
            {cmd, none} -> null;
            _ -> stdin_mode(Get(stdin, pipe))
        end,
    Request0 = #{
        path => Path,
        argv => [Arg0 | ArgBins],
        env => environment(Get(env, []), bool(clear_env, Get(clear_env, false))),
        stdin => Stdin,
        stdout => Stdout,
        stderr => request_stderr(Stderr),
        kill_timeout =>
            bounded(kill_timeout, Get(kill_timeout, ?DEFAULT_KILL_TIMEOUT), 0, ?MAX_KILL_TIMEOUT),
        stop_signal => signal(stop_signal, Get(stop_signal, sigterm)),
        pipe_size => bounded(pipe_size, Get(pipe_size, ?DEFAULT_PIPE_SIZE), 0, ?MAX_PIPE_SIZE)
    },
    %% Without `cd' the child starts in the VM's current directory, as with
    %% System.cmd/3, and a relative `cd' is taken from there: the driver
    %% sends the VM's directory with the request (see corral_drv.cpp).
    Request1 =
        case Get(cd, undefined) of
            undefined -> Request0;
            Dir -> Request0#{cd => cd(Dir)}
        end,
    Request2 = maps:merge(Request1, identity(Get)),
    Request = start_report(
        Context,
        Input,
        memory_events(Get(memory_events, false), cgroup_request(Get, Request2))
    ),
    MaxLine = pos_int(max_line_length, Get(max_line_length, default_max_line(Context))),
    Lines =
        case Context of
            daemon -> true;
            _ -> bool(lines, Get(lines, false))
        end,
    Common = #{
        context => Context,
        request => Request,
        window => bounded(window, Get(window, ?DEFAULT_WINDOW), 1, ?MAX_WINDOW),
        port_opts => PortOpts,
        stderr => Stderr,
        output =>
            case CaptureStderrOnly of
                true -> stderr;
                false -> stdout
            end,
        input => Input,
        ignore_epipe => bool(ignore_epipe, Get(ignore_epipe, false)),
        lines =>
            case Lines of
                true -> MaxLine;
                false -> false
            end,
        timeout => timeout_value(Get(timeout, infinity)),
        max_output_size => max_output(Get(max_output_size, infinity)),
        fold => fold(Get(fold, undefined)),
        cgroup_options => Get(cgroup, #{})
    },
    case Context of
        daemon -> maps:merge(Common, daemon(Cmd, Get, Log));
        _ -> Common
    end.

default_max_line(daemon) -> ?DEFAULT_DAEMON_MAX_LINE;
default_max_line(_) -> ?DEFAULT_MAX_LINE.

%% The level of each stream's lines, for a daemon; `undefined' elsewhere.
%% A logger_fun gets the lines even without a level (it ignores it).
log_levels(daemon, Get, CaptureStderrOnly) ->
    Fun = Get(logger_fun, undefined) =/= undefined,
    Out = optional_level(log_output, Get(log_output, nil), Fun),
    Err = optional_level(log_stderr_level, Get(log_stderr_level, default), Out),
    case CaptureStderrOnly of
        true -> #{stdout => none, stderr => Err};
        false -> #{stdout => Out, stderr => Err}
    end;
log_levels(_, _, _) ->
    undefined.

%% `default' (log_stderr_level not given) takes log_output's decision.
optional_level(_, default, Inherited) -> Inherited;
optional_level(_, Off, true) when Off =:= nil; Off =:= none; Off =:= false -> info;
optional_level(_, Off, _) when Off =:= nil; Off =:= none; Off =:= false -> none;
optional_level(Name, Level, _) ->
    case log_level(Level) of
        {ok, L} -> L;
        error -> bad(Name, Level)
    end.

%% @doc A Logger level, `warn' taken for `warning'.
-spec log_level(term()) -> {ok, log_level()} | error.
log_level(warn) ->
    {ok, warning};
log_level(L) ->
    case lists:member(L, [emergency, alert, critical, error, warning, notice, info, debug]) of
        true -> {ok, L};
        false -> error
    end.

daemon(Cmd, Get, Log) ->
    Prefix =
        case Get(log_prefix, undefined) of
            undefined -> <<(text(command, Cmd))/binary, ": ">>;
            P -> text(log_prefix, P)
        end,
    Timeout = bounded(ready_timeout, Get(ready_timeout, ?DEFAULT_READY_TIMEOUT), 1, ?MAX_TIMER),
    #{
        log => Log,
        log_prefix => Prefix,
        log_transform => optional_fun(log_transform, Get(log_transform, undefined), 1),
        logger_metadata => metadata(Get(logger_metadata, [])),
        logger_fun => logger_fun(Get(logger_fun, undefined)),
        exit_status_to_reason =>
            case optional_fun(exit_status_to_reason, Get(exit_status_to_reason, undefined), 1) of
                undefined -> fun(N) -> {exit_status, N} end;
                F -> F
            end,
        wait_for => optional_fun(wait_for, Get(wait_for, undefined), 0),
        ready => ready(Get(ready, undefined)),
        ready_timeout => Timeout,
        min_uptime => bounded(min_uptime, Get(min_uptime, 0), 0, ?MAX_TIMER)
    }.

optional_fun(_, undefined, _) -> undefined;
optional_fun(_, nil, _) -> undefined;
optional_fun(_, F, Arity) when is_function(F, Arity) -> F;
optional_fun(Name, V, _) -> bad(Name, V).

logger_fun({M, F, A} = MFA) when is_atom(M), is_atom(F), is_list(A) -> MFA;
logger_fun(V) -> optional_fun(logger_fun, V, 1).

metadata(M) when is_list(M) ->
    Pair = fun
        ({K, _}) -> is_atom(K);
        (_) -> false
    end,
    lists:all(Pair, M) orelse bad(logger_metadata, M),
    M;
metadata(M) ->
    bad(logger_metadata, M).

ready(undefined) -> none;
ready(nil) -> none;
ready({line, Pattern} = V) -> {line, pattern(Pattern, V)};
ready({tcp, Port}) when is_integer(Port), Port > 0, Port < 65536 -> {tcp, {127, 0, 0, 1}, Port};
ready({tcp, Host, Port} = V) when is_integer(Port), Port > 0, Port < 65536 ->
    if
        is_tuple(Host); is_atom(Host) ->
            {tcp, Host, Port};
        is_binary(Host); is_list(Host) ->
            try unicode:characters_to_list(Host) of
                H when is_list(H) -> {tcp, H, Port};
                _ -> bad(ready, V)
            catch
                error:_ -> bad(ready, V)
            end;
        true ->
            bad(ready, V)
    end;
ready(F) when is_function(F, 0) -> {call, F};
ready(V) -> bad(ready, V).

%% An Elixir Regex (its compiled pattern), a compiled re pattern, or a
%% pattern in text.
pattern(#{'__struct__' := 'Elixir.Regex', re_pattern := MP}, _) ->
    MP;
pattern({re_pattern, _, _, _, _} = MP, _) ->
    MP;
pattern(P, V) when is_binary(P); is_list(P) ->
    case catch re:compile(P, [unicode]) of
        {ok, MP} -> MP;
        _ -> bad(ready, V)
    end;
pattern(_, V) ->
    bad(ready, V).

%% Resolves the executable like System.cmd/3: an absolute path is taken as
%% it is, anything else is looked up with os:find_executable/1.
executable(Cmd) ->
    Name = text(command, Cmd),
    Name =/= <<>> orelse throw({corral_opts, enoent}),
    case filename:pathtype(Name) of
        absolute ->
            Name;
        _ ->
            case os:find_executable(binary_to_list(Name)) of
                false -> throw({corral_opts, enoent});
                Found -> unicode:characters_to_binary(absolute(Found))
            end
    end.

%% filename:absname/1 asks for the current directory (a dirty I/O call)
%% even for a path that is absolute already, as PATH's entries nearly
%% always are.
absolute(Path) ->
    case filename:pathtype(Path) of
        absolute -> Path;
        _ -> filename:absname(Path)
    end.

args(Args) when is_list(Args) ->
    proper(Args) orelse bad(args, Args),
    [text(args, A) || A <- Args];
args(Args) ->
    bad(args, Args).

%% Text without NUL bytes, from a binary, a string (chardata) or an atom.
text(Name, V) when is_atom(V), V =/= undefined, V =/= nil, V =/= true, V =/= false ->
    text(Name, atom_to_binary(V, utf8));
text(Name, V) when is_binary(V); is_list(V) ->
    case catch unicode:characters_to_binary(V) of
        B when is_binary(B) ->
            case binary:match(B, <<0>>) of
                nomatch -> B;
                _ -> bad(Name, V)
            end;
        _ ->
            bad(Name, V)
    end;
text(Name, V) ->
    bad(Name, V).

cd(Dir) ->
    case text(cd, Dir) of
        <<>> -> bad(cd, Dir);
        B -> B
    end.

%% The complete environment of the child, built here from the VM's current
%% one (os:env/0, so os:putenv/2 and System.put_env/2 are honoured).
environment(Env, Clear) when is_map(Env) ->
    environment(maps:to_list(Env), Clear);
environment([], false) ->
    [unicode:characters_to_binary([K, $=, V]) || {K, V} <- os:env()];
environment(Env, Clear) when is_list(Env) ->
    Base =
        case Clear of
            true ->
                #{};
            false ->
                maps:from_list([
                    {unicode:characters_to_binary(K), unicode:characters_to_binary(V)}
                 || {K, V} <- os:env()
                ])
        end,
    Final = lists:foldl(fun env_entry/2, Base, Env),
    [<<K/binary, $=, V/binary>> || {K, V} <- maps:to_list(Final)];
environment(Env, _) ->
    bad(env, Env).

%% Errors name the whole {Key, Value} entry.
env_entry({K, V} = E, Acc) ->
    try
        Key = text(env, K),
        (Key =/= <<>> andalso binary:match(Key, <<"=">>) =:= nomatch) orelse bad(env, E),
        case V of
            nil -> maps:remove(Key, Acc);
            false -> maps:remove(Key, Acc);
            _ -> Acc#{Key => text(env, V)}
        end
    catch
        throw:{corral_opts, {bad_option, env, _}} -> bad(env, E)
    end;
env_entry(E, _) ->
    bad(env, E).

bool(_, B) when is_boolean(B) -> B;
bool(Name, V) -> bad(Name, V).

pos_int(_, N) when is_integer(N), N > 0 -> N;
pos_int(Name, V) -> bad(Name, V).

bounded(_, N, Min, Max) when is_integer(N), N >= Min, N =< Max -> N;
bounded(Name, V, _, _) -> bad(Name, V).

canonical(Option, Value) ->
    case [C || {O, A, C} <- value_aliases(), O =:= Option, A =:= Value] of
        [Canonical] -> Canonical;
        [] -> Value
    end.

%% The `stderr' value of each entry point; see stderr(). A daemon reads
%% stderr to log it; when it logs nothing, stderr is the VM's (as with
%% MuonTrap), and /dev/null when stderr alone is not logged.
stderr_mode(daemon, #{stderr := none}, default, M) when M =:= default; M =:= pipe; M =:= consume ->
    inherit;
stderr_mode(daemon, #{stderr := none}, _, M) when M =:= default; M =:= pipe; M =:= consume ->
    discard;
stderr_mode(daemon, _, _, M) when M =:= default; M =:= pipe; M =:= consume ->
    capture;
stderr_mode(Context, _, _, M) ->
    stderr_mode(Context, M).

stderr_mode(open, M) when M =:= default; M =:= pipe; M =:= consume -> capture;
stderr_mode(cmd, default) -> inherit;
stderr_mode(cmd, M) when M =:= pipe; M =:= consume -> forward;
stderr_mode(_, M) when M =:= default; M =:= pipe -> forward;
stderr_mode(_, consume) -> capture;
stderr_mode(_, redirect) -> merge;
stderr_mode(_, discard) -> discard;
stderr_mode(_, inherit) -> inherit;
stderr_mode(_, M) -> bad(stderr, M).

request_stderr(inherit) -> inherit;
request_stderr(forward) -> pipe;
request_stderr(capture) -> pipe;
request_stderr(merge) -> stdout;
request_stderr(discard) -> null.

stdout_mode(pipe) -> pipe;
stdout_mode(null) -> null;
stdout_mode(M) -> bad(stdout, M).

stdin_mode(pipe) -> pipe;
stdin_mode(null) -> null;
stdin_mode(M) -> bad(stdin, M).

timeout_value(infinity) -> infinity;
timeout_value(nil) -> infinity;
timeout_value(T) -> bounded(timeout, T, 1, ?MAX_TIMER).

max_output(infinity) -> infinity;
max_output(nil) -> infinity;
max_output(N) -> pos_int(max_output_size, N).

input(_, undefined) -> none;
input(_, nil) -> none;
input(cmd, F) when is_function(F, 1) -> {call, F};
input(_, F) when is_function(F, 1) -> {sink, F};
input(_, B) when is_binary(B) -> {data, B};
input(_, L) when is_list(L) ->
    try iolist_size(L) of
        _ -> {data, L}
    catch
        error:badarg -> bad(input, L)
    end;
input(_, V) ->
    bad(input, V).

fold(undefined) -> undefined;
fold({F, _Acc} = Fold) when is_function(F, 2) -> Fold;
fold(V) -> bad(fold, V).

%% The identity and limit keys of the request, only those that are set (a
%% child without them costs the spawner nothing).
identity(Get) ->
    Set = [
        {uid, optional(Get(uid, nil), fun(V) -> id(uid, V) end)},
        {gid, optional(Get(gid, nil), fun(V) -> id(gid, V) end)},
        {groups, optional(Get(groups, nil), fun groups/1)},
        {rlimits,
            case rlimits(Get(rlimits, [])) of
                [] -> none;
                Limits -> Limits
            end},
        {nice, optional(Get(nice, nil), fun(V) -> int_in(nice, V, -20, 19) end)},
        {umask, optional(Get(umask, nil), fun(V) -> int_in(umask, V, 0, 8#777) end)},
        {no_new_privs,
            case bool(no_new_privs, Get(no_new_privs, false)) of
                true -> true;
                false -> none
            end}
    ],
    maps:from_list([{K, V} || {K, V} <- Set, V =/= none]).

optional(nil, _) -> none;
optional(undefined, _) -> none;
optional(V, Check) -> Check(V).

%% A uid or gid: a number, or a name for the spawner to look up.
id(_, N) when is_integer(N), N >= 0, N =< 4294967294 -> N;
id(Name, N) when is_integer(N) -> bad(Name, N);
id(Name, V) ->
    case text(Name, V) of
        <<>> -> bad(Name, V);
        B -> B
    end.

%% Errors name the offending element.
groups(L) when is_list(L) -> [id(groups, G) || G <- L];
groups(V) -> bad(groups, V).

int_in(_, N, Lo, Hi) when is_integer(N), N >= Lo, N =< Hi -> N;
int_in(Name, V, _, _) -> bad(Name, V).

%% @doc The resources the `rlimits' option names (RLIMIT_AS, ...).
-spec rlimit_resources() -> [atom()].
rlimit_resources() ->
    [
        as,
        core,
        cpu,
        data,
        fsize,
        locks,
        memlock,
        msgqueue,
        nice,
        nofile,
        nproc,
        rss,
        rtprio,
        rttime,
        sigpending,
        stack
    ].

%% A map or a list of {Resource, Limit}, each resource once; errors name
%% the offending entry.
rlimits(nil) ->
    [];
rlimits(M) when is_map(M) -> rlimits(lists:sort(maps:to_list(M)));
rlimits(L) when is_list(L) ->
    {Limits, _} = lists:mapfoldl(fun rlimit_entry/2, #{}, L),
    Limits;
rlimits(V) ->
    bad(rlimits, V).

rlimit_entry({R, Limit} = E, Seen) when is_atom(R), not is_map_key(R, Seen) ->
    lists:member(R, rlimit_resources()) orelse bad(rlimits, E),
    {Soft, Hard} =
        case Limit of
            {S, H} -> {limit(S, E), limit(H, E)};
            L -> {limit(L, E), limit(L, E)}
        end,
    (Hard =:= infinity orelse (Soft =/= infinity andalso Soft =< Hard)) orelse bad(rlimits, E),
    {{R, Soft, Hard}, Seen#{R => true}};
rlimit_entry(E, _) ->
    bad(rlimits, E).

%% The spawner takes limits up to 2^63 - 1; beyond that is infinity anyway.
limit(infinity, _) -> infinity;
limit(N, _) when is_integer(N), N >= 0, N < 1 bsl 63 -> N;
limit(_, E) -> bad(rlimits, E).

signal(Name, V) ->
    case signal_number(V) of
        {ok, N} -> N;
        error -> bad(Name, V)
    end.

%% @doc Maps a signal name (`sigterm' or `term') or number to its number.
-spec signal_number(term()) -> {ok, 1..64} | error.
signal_number(N) when is_integer(N), N >= 1, N =< 64 -> {ok, N};
signal_number(Name) when is_atom(Name) ->
    Table = #{
        sighup => 1,
        sigint => 2,
        sigquit => 3,
        sigill => 4,
        sigabrt => 6,
        sigkill => 9,
        sigusr1 => 10,
        sigsegv => 11,
        sigusr2 => 12,
        sigpipe => 13,
        sigalrm => 14,
        sigterm => 15,
        sigchld => 17,
        sigcont => 18,
        sigstop => 19,
        sigtstp => 20,
        sigttin => 21,
        sigttou => 22,
        sigwinch => 28
    },
    Long =
        case atom_to_list(Name) of
            "sig" ++ _ -> Name;
            Short -> catch list_to_existing_atom("sig" ++ Short)
        end,
    case Table of
        #{Long := N} -> {ok, N};
        _ -> error
    end;
signal_number(_) ->
    error.

%%% ------------------------------------------------------------------------
%%% cgroups

%% The request's `cgroup' map, present only when a cgroup option is given.
%% Every form becomes v2 file names and values (one mechanism: the spawner
%% places each controller on v2 or a v1 hierarchy and translates there).
cgroup_request(Get, Request) ->
    Map = Get(cgroup, undefined),
    Base = Get(cgroup_base, undefined),
    Path = Get(cgroup_path, undefined),
    Ctrls = Get(cgroup_controllers, undefined),
    Sets = Get(cgroup_sets, undefined),
    case {Map, Base, Path, Ctrls, Sets} of
        {undefined, undefined, undefined, undefined, undefined} ->
            Request;
        _ ->
            Base =/= undefined andalso Path =/= undefined andalso bad(cgroup_path, Path),
            Settings = cgroup_map(Map) ++ cgroup_sets(Sets),
            Controllers = cgroup_controllers(Ctrls) ++ [C || {C, _, _} <- cgroup_sets_c(Sets)],
            Request#{
                cgroup => #{
                    base => cgroup_dir(cgroup_base, Base),
                    path => cgroup_dir(cgroup_path, Path),
                    controllers => lists:usort(Controllers),
                    settings => lists:append([[F, V] || {F, V} <- Settings])
                }
            }
    end.

%% cmd/3 without input needs nothing from the child before it exits: not
%% its pid, not its pipes (no byte is lost while they wait: the child's
%% output stays in the pipe). So the spawner may hold the start report
%% (the pid and the pipes) for a moment, and a child that exits within it
%% costs the VM one wake-up (report, output and exit together) instead of
%% three (report, end of output, exit). A child that runs longer is
%% reported when the moment is over; its output waits that long at most.
%% With input the child may wait on it, so nothing is held.
start_report(cmd, none, Request) -> Request#{report_delay => ?CMD_REPORT_DELAY_MS};
start_report(_Context, _Input, Request) -> Request.

%% The request's `memory_events', present only when subscribed. The
%% spawner watches the child's memory leaf, so there must be one.
memory_events(false, Request) ->
    Request;
memory_events(nil, Request) ->
    Request;
memory_events(V, Request) ->
    Keys = [low, high, max, oom, oom_kill, oom_group_kill],
    Events =
        case V of
            true ->
                all;
            [_ | _] ->
                proper(V) andalso lists:all(fun(K) -> lists:member(K, Keys) end, V) orelse
                    bad(memory_events, V),
                lists:usort(V);
            _ ->
                bad(memory_events, V)
        end,
    case has_memory_cgroup(maps:get(cgroup, Request, undefined)) of
        true -> Request#{memory_events => Events};
        false -> bad(memory_events, {no_memory_cgroup, V})
    end.

has_memory_cgroup(undefined) ->
    false;
has_memory_cgroup(#{controllers := Ctrls, settings := Settings}) ->
    lists:member(<<"memory">>, Ctrls) orelse
        lists:any(fun(F) -> binary:match(F, <<"memory.">>) =:= {0, 7} end, every_other(Settings)).

every_other([F, _ | T]) -> [F | every_other(T)];
every_other([]) -> [].

cgroup_dir(_, undefined) ->
    <<>>;
cgroup_dir(Name, V) ->
    B = text(Name, V),
    Parts = binary:split(B, <<"/">>, [global]),
    case B =/= <<>> andalso B =/= <<"/">> andalso not lists:member(<<"..">>, Parts) of
        true -> B;
        false -> bad(Name, V)
    end.

%% {File, Value} pairs, sorted by file (memory.max before memory.swap.max,
%% which v1 needs).
cgroup_map(undefined) ->
    [];
cgroup_map(M) when is_map(M) ->
    lists:keysort(1, [cgroup_setting(K, V) || {K, V} <- maps:to_list(M)]);
cgroup_map(V) ->
    bad(cgroup, V).

cgroup_setting(K, V) when is_atom(K) ->
    case {K, V} of
        {cpu_weight, N} when is_integer(N), N >= 1, N =< 10000 -> {<<"cpu.weight">>, int(N)};
        {io_weight, N} when is_integer(N), N >= 1, N =< 10000 -> {<<"io.weight">>, int(N)};
        {cpu_max, max} -> {<<"cpu.max">>, <<"max">>};
        {cpu_max, {Q, P}} when
            (Q =:= max orelse (is_integer(Q) andalso Q >= 1000)),
            is_integer(P),
            P >= 1000,
            P =< 1000000
        ->
            {<<"cpu.max">>, iolist_to_binary([amount(Q), " ", int(P)])};
        {cpu_idle, B} when is_boolean(B); B =:= 0; B =:= 1 -> {<<"cpu.idle">>, flag(B)};
        {memory_oom_group, B} when is_boolean(B); B =:= 0; B =:= 1 ->
            {<<"memory.oom.group">>, flag(B)};
        {pids_max, N} when N =:= max; is_integer(N), N >= 0 -> {<<"pids.max">>, amount(N)};
        {cpuset_cpus, L} -> {<<"cpuset.cpus">>, cpuset(K, L)};
        {cpuset_mems, L} -> {<<"cpuset.mems">>, cpuset(K, L)};
        _ ->
            Known = [cpu_weight, io_weight, cpu_max, cpu_idle, memory_oom_group, pids_max],
            case memory_file(K) of
                undefined ->
                    lists:member(K, Known) andalso bad({cgroup, K}, V),
                    throw({corral_opts, {unknown_option, {cgroup, K}}});
                File when V =:= max; V =:= infinity; is_integer(V), V >= 0 ->
                    {File, amount(V)};
                _ ->
                    bad({cgroup, K}, V)
            end
    end;
cgroup_setting(K, V) ->
    File = cgroup_file({cgroup, K}, K),
    {File, cgroup_value({cgroup, K}, V)}.

memory_file(memory_min) -> <<"memory.min">>;
memory_file(memory_low) -> <<"memory.low">>;
memory_file(memory_high) -> <<"memory.high">>;
memory_file(memory_max) -> <<"memory.max">>;
memory_file(memory_swap_max) -> <<"memory.swap.max">>;
memory_file(_) -> undefined.

amount(N) when is_integer(N) -> int(N);
amount(_) -> <<"max">>.

int(N) -> integer_to_binary(N).

flag(true) -> <<"1">>;
flag(1) -> <<"1">>;
flag(_) -> <<"0">>.

cpuset(K, L) ->
    B =
        try
            text(cpuset, L)
        catch
            throw:_ -> bad({cgroup, K}, L)
        end,
    case B =/= <<>> andalso re:run(B, "^[0-9,-]+$") =/= nomatch of
        true -> B;
        false -> bad({cgroup, K}, L)
    end.

%% An interface file name: "controller.file", no '/', no "..".
cgroup_file(Name, F) ->
    B =
        try
            text(Name, F)
        catch
            throw:_ -> bad(Name, F)
        end,
    case re:run(B, "^[a-z_]+\\.[A-Za-z0-9_.]+$") =/= nomatch andalso binary:match(B, <<"..">>) =:= nomatch of
        true -> B;
        false -> bad(Name, F)
    end.

cgroup_value(_, N) when is_integer(N) -> int(N);
cgroup_value(_, max) -> <<"max">>;
cgroup_value(Name, V) -> text(Name, V).

cgroup_controllers(undefined) ->
    [];
cgroup_controllers(L) when is_list(L) ->
    [cgroup_controller(cgroup_controllers, C) || C <- L];
cgroup_controllers(V) ->
    bad(cgroup_controllers, V).

cgroup_controller(Name, C) ->
    B =
        try
            text(Name, C)
        catch
            throw:_ -> bad(Name, C)
        end,
    case re:run(B, "^[a-z_]+$") of
        nomatch -> bad(Name, C);
        _ -> B
    end.

%% MuonTrap 1's {Controller, File, Value}, checked.
cgroup_sets_c(undefined) ->
    [];
cgroup_sets_c(L) when is_list(L) ->
    [
        case E of
            {C, F, V} ->
                {cgroup_controller({cgroup_sets, E}, C), cgroup_file({cgroup_sets, E}, F),
                    cgroup_value({cgroup_sets, E}, V)};
            _ ->
                bad(cgroup_sets, E)
        end
     || E <- L
    ];
cgroup_sets_c(V) ->
    bad(cgroup_sets, V).

cgroup_sets(Sets) ->
    [{F, V} || {_, F, V} <- cgroup_sets_c(Sets)].
