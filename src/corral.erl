%% @doc Run operating-system programs from Erlang, contained.
%%
%% Each child is one port of the linked-in driver `corral_drv'. The process
%% that calls {@link open/3} owns the port and receives its messages:
%%
%% <ul>
%% <li>`{Port, {data, stdout | stderr, Bin}}': output. The driver stops
%%     reading once `window' bytes are unacknowledged; call {@link ack/2}
%%     with the size of what you consumed to let more in.</li>
%% <li>`{Port, {stdin_error, Errno}}': the child closed its stdin while bytes
%%     were queued (e.g. `epipe'). Later writes are dropped.</li>
%% <li>`{Port, {memory_events, #{Key => Count}}}', with the `memory_events'
%%     option only: the child's memory.events counts (cumulative, keyed
%%     `low', `high', `max', `oom', `oom_kill', `oom_group_kill', those
%%     subscribed to and that the memory hierarchy has; on cgroup v1 `max'
%%     is memory.failcnt, `oom' the OOM notifications, `oom_kill'
%%     memory.oom_control's). Sent when they change, at most one per
%%     100 ms, always the latest; the last one before the terminal
%%     message.</li>
%% <li>exactly one terminal message, always after all output:
%%     `{Port, {exit_status, N}}', `{Port, {exit_signal, Sig}}',
%%     `{Port, {exit_signal, Sig, oom_kill}}' (killed by signal Sig, and the
%%     OOM killer struck in the child's cgroups: a memory limit was hit),
%%     `{Port, {error, {Reason, Stage}}}', or, where the spawner says what
%%     failed (stage `cgroup'), `{Port, {error, {Reason, {Stage, Detail}}}}'
%%     with `Detail' a binary sentence. Then the port closes itself.</li>
%% </ul>
%%
%% When the owner exits, however it exits, the port closes and the spawner
%% stops the child's whole process group: the stop signal, then SIGKILL after
%% `kill_timeout' ms.
-module(corral).

-compile({no_auto_import, [spawn/3]}).

-export([
    open/3,
    spawn/3,
    write/2,
    close_stdin/1,
    ack/2,
    set_window/2,
    signal/2,
    stop/1,
    stop/2,
    request_stop/1,
    os_pid/1,
    cgroup_dirs/1,
    cgget/2,
    cgset/3,
    cgroup_info/0,
    stats/1,
    cmd/2,
    cmd/3,
    status/1
]).
%% For the other entry points (corral_stream, Corral.Process): start from a
%% corral_opts:normalize/4 result; drain a port. corral_cgroup loads the
%% driver for its own ports.
-export([open_normalized/1, spawn_normalized/1, await_terminal/2, flush_exit/1, ensure_driver/0]).

-export_type([terminal/0, status/0, stats/0, cgroup_info/0]).

-type terminal() ::
    {exit_status, non_neg_integer()}
    | {exit_signal, pos_integer()}
    | {exit_signal, pos_integer(), oom_kill}
    | {error, {atom(), atom() | {atom(), binary()}}}.
%% A terminal message as one value: the exit status, 128 + N for death by
%% signal N (as in a shell), or `{error, Reason}' when the child was lost.
-type status() :: non_neg_integer() | {error, term()}.
-type stats() :: #{
    bytes_in := non_neg_integer(),
    bytes_out := non_neg_integer(),
    bytes_err := non_neg_integer(),
    read_count := non_neg_integer(),
    write_count := non_neg_integer(),
    duration_ms := non_neg_integer(),
    unacked := non_neg_integer(),
    stdin_queued := non_neg_integer(),
    cgroup := corral_cgroup:stats()
}.

%% One cgroup hierarchy as seen from this VM: where it is mounted, our
%% group's directory in it, its controllers (v2: the group's
%% cgroup.controllers) and whether this VM's uid may make groups in it and
%% move processes into it (root, or delegated: systemd's Delegate=).
-type cgroup_group() :: #{
    mount := binary(),
    group := binary(),
    controllers := [atom()],
    writable := boolean()
}.
-type cgroup_info() :: #{
    uid := non_neg_integer(),
    v2 := cgroup_group() | none,
    base := ok | {error, binary()},
    spawner_base := binary() | none,
    v1 := [cgroup_group()],
    controllers := #{atom() => v2 | v1}
}.

%% The driver's commands (OP_*); the driver's header is generated from it.
-include("corral_protocol.hrl").

%% How long a spawn waits for room on the spawner's request socket.
-define(SPAWN_QUEUE_MS, 5000).

-define(MAX_U64, 16#FFFFFFFFFFFFFFFF).

%%% ------------------------------------------------------------------------
%%% Ports

%% @doc Starts `Cmd' with `Args'. The caller owns the returned port.
%%
%% Returns after the child has been exec'd, or with the reason it could not
%% be: `{error, enoent}' (not found in PATH), `{error, {Errno, Stage}}' from
%% the child's setup (e.g. `{enoent, chdir}', `{eacces, exec}'), or
%% `{error, {bad_option, Name, Value}}' or `{error, {unknown_option, Name}}'
%% (see corral_opts).
-spec open(iodata() | atom(), [iodata() | atom()], corral_opts:options()) ->
    {ok, port()} | {error, term()}.
open(Cmd, Args, Opts) ->
    case corral_opts:normalize(Cmd, Args, Opts, open) of
        {ok, N} -> open_normalized(N);
        Error -> Error
    end.

%% @doc Like {@link open/3}, and also returns the child's OS pid (also its
%% process group id), for a caller that must know it after the port has
%% closed; {@link os_pid/1} asks a running port.
-spec spawn(iodata() | atom(), [iodata() | atom()], corral_opts:options()) ->
    {ok, port(), pos_integer()} | {error, term()}.
spawn(Cmd, Args, Opts) ->
    case corral_opts:normalize(Cmd, Args, Opts, open) of
        {ok, N} -> spawn_normalized(N);
        Error -> Error
    end.

%% @doc {@link open/3} from a {@link corral_opts:normalize/4} result.
-spec open_normalized(corral_opts:normalized()) -> {ok, port()} | {error, term()}.
open_normalized(N) ->
    case spawn_normalized(N) of
        {ok, Port, _OsPid} -> {ok, Port};
        Error -> Error
    end.

%% @doc {@link spawn/3} from a {@link corral_opts:normalize/4} result. Only
%% the `request', `window' and `port_opts' keys are used: what the others
%% ask for (stderr forwarding, input, lines) is the caller's to do.
-spec spawn_normalized(corral_opts:normalized()) ->
    {ok, port(), pos_integer()} | {error, term()}.
spawn_normalized(#{request := Request, window := Window} = N) ->
    SpawnerPath = ensure_driver(),
    Port = open_port({spawn_driver, "corral_drv"}, [binary | maps:get(port_opts, N, [])]),
    Blob = term_to_binary(Request),
    Msg = <<Window:64/native, (byte_size(SpawnerPath)):32/native, SpawnerPath/binary, Blob/binary>>,
    send_spawn(Port, Msg, erlang:monotonic_time(millisecond) + ?SPAWN_QUEUE_MS, 0).

%% The driver never blocks on the spawner's request socket: when it is full
%% (the spawner is behind, or stopped) the request is refused with eagain,
%% and this process, not a scheduler thread, waits and sends it again, for
%% at most ?SPAWN_QUEUE_MS in all; then {error, {eagain, spawn}}.
send_spawn(Port, Msg, Deadline, Pause) ->
    case port_control(Port, ?OP_SPAWN, Msg) of
        <<1, "eagain">> ->
            case erlang:monotonic_time(millisecond) < Deadline of
                true ->
                    Next = min(max(2 * Pause, 1), 50),
                    timer:sleep(Next),
                    send_spawn(Port, Msg, Deadline, Next);
                false ->
                    port_close(Port),
                    {error, {eagain, spawn}}
            end;
        <<0>> ->
            receive
                {Port, {started, OsPid}} ->
                    {ok, Port, OsPid};
                {Port, {error, Reason}} ->
                    flush_exit(Port),
                    {error, Reason}
            end;
        <<1, Errno/binary>> ->
            port_close(Port),
            {error, {binary_to_atom(Errno, latin1), spawn}}
    end.

%% @doc Queues `Data' for the child's stdin. When the driver's queue is above
%% its high-water mark the caller is suspended until the child catches up.
%% Any process may write.
%%
%% Returns `{error, closed}' once the port is gone (the child has exited
%% and its terminal message was sent): unlike {@link ack/2}, a write that
%% cannot reach the child is worth knowing about. After the child closed
%% its stdin but before it exits, writes return `ok' and are dropped; the
%% owner gets `{Port, {stdin_error, epipe}}'.
%%
%% `{error, {bad_data, Data}}' when `Data' is not iodata (the port would
%% otherwise be closed, and the child stopped, by the VM), and
%% `{error, {bad_port, Port}}' when `Port' is not a port at all.
-spec write(port(), iodata()) -> ok | {error, closed | {bad_data, term()} | {bad_port, term()}}.
write(Port, _Data) when not is_port(Port) ->
    {error, {bad_port, Port}};
write(Port, Data) ->
    case iodata(Data) of
        true ->
            try
                true = erlang:port_command(Port, Data),
                ok
            catch
                error:badarg -> {error, closed}
            end;
        false ->
            {error, {bad_data, Data}}
    end.

iodata(B) when is_binary(B) -> true;
iodata(L) when is_list(L) ->
    try erlang:iolist_size(L) of
        _ -> true
    catch
        error:badarg -> false
    end;
iodata(_) ->
    false.

%% @doc Closes the child's stdin once the queued bytes have been written.
%% `ok' also when the port has closed already: the child's stdin is then
%% closed too.
-spec close_stdin(port()) -> ok | {error, {bad_port, term()}}.
close_stdin(Port) -> simple_control(Port, ?OP_CLOSE_STDIN, <<>>).

%% @doc Acknowledges `Bytes' of output, so the driver reads more. `ok' also
%% when the port has closed already (the child exited after sending that
%% output): the natural receive loop must not crash on a race it cannot see.
%% More than 2^64 - 1 acknowledges everything, as that does.
-spec ack(port(), non_neg_integer()) -> ok | {error, {bad_port, term()}}.
ack(Port, Bytes) when is_integer(Bytes), Bytes >= 0 ->
    simple_control(Port, ?OP_ACK, <<(min(Bytes, ?MAX_U64)):64/native>>).

%% @doc Sets the credit window (unacknowledged output bytes) of a port.
%% `ok' also when the port has closed already, as {@link ack/2}.
-spec set_window(port(), 1..18446744073709551615) -> ok | {error, {bad_port, term()}}.
set_window(Port, Bytes) when is_integer(Bytes), Bytes > 0, Bytes =< ?MAX_U64 ->
    simple_control(Port, ?OP_SET_WINDOW, <<Bytes:64/native>>).

%% @doc Sends a signal (`sigterm', `term', `sighup', 15, ...) to the child's
%% process group. `{error, not_running}' once the child has exited.
-spec signal(port(), atom() | pos_integer()) -> ok | {error, term()}.
signal(Port, Sig) ->
    case corral_opts:signal_number(Sig) of
        {ok, N} ->
            case control(Port, ?OP_SIGNAL, <<N:32/native>>) of
                {ok, <<>>} -> ok;
                {ok, <<1, "esrch">>} -> {error, not_running};
                {ok, <<1, E/binary>>} -> {error, binary_to_atom(E, latin1)};
                Error -> Error
            end;
        error ->
            {error, {bad_signal, Sig}}
    end.

%% @equiv stop(Port, infinity)
-spec stop(port()) -> terminal() | {error, closed | timeout | not_owner | {bad_port, term()}}.
stop(Port) -> stop(Port, infinity).

%% @doc Stops the child gracefully and returns its terminal message once the
%% whole process group is gone: the stop signal first, SIGKILL after
%% `kill_timeout'. Only the owner may call it; output still in flight is
%% acknowledged and dropped.
%%
%% `{error, closed}' when the port has closed already (its terminal
%% message went to the owner before), `{error, not_owner}' for a caller
%% that does not own the port (the terminal message would never reach it:
%% use {@link request_stop/1}), `{error, {bad_port, Port}}' for anything
%% but a Corral port. Nothing is stopped in those cases.
-spec stop(port(), timeout()) ->
    terminal() | {error, closed | timeout | not_owner | {bad_port, term()}}.
stop(Port, Timeout) when
    Timeout =:= infinity; is_integer(Timeout), Timeout >= 0
->
    Self = self(),
    case port_owner(Port) of
        Self -> stop_owned(Port, Timeout);
        %% Its terminal message may still be in the caller's mailbox.
        {error, closed} -> await_terminal(Port, 0);
        {error, _} = Error -> Error;
        _ -> {error, not_owner}
    end.

stop_owned(Port, Timeout) ->
    _ = request_stop(Port),
    %% Forgive what the owner consumed without acknowledging: the driver must
    %% be able to read on to EOF. await_terminal/2 acks the rest.
    _ = ack(Port, 1 bsl 62),
    await_terminal(Port, Timeout).

%% @doc Asks the spawner to stop the child (the stop signal to its process
%% group, SIGKILL after `kill_timeout') and returns at once. Any process may
%% call it; the owner receives the terminal message as usual.
-spec request_stop(port()) -> ok | {error, closed | not_running | {bad_port, term()}}.
request_stop(Port) ->
    case control(Port, ?OP_STOP, <<>>) of
        {ok, <<>>} -> ok;
        {ok, <<1, _/binary>>} -> {error, not_running};
        Error -> Error
    end.

%% @private Drains `Port''s messages until its terminal message.
-spec await_terminal(port(), timeout()) -> terminal() | {error, closed | timeout}.
await_terminal(Port, Timeout) ->
    receive
        {Port, {data, _, Bin}} ->
            _ = ack(Port, byte_size(Bin)),
            await_terminal(Port, Timeout);
        {Port, {stdin_error, _}} ->
            await_terminal(Port, Timeout);
        {Port, {started, _}} ->
            await_terminal(Port, Timeout);
        {Port, {memory_events, _}} ->
            await_terminal(Port, Timeout);
        {Port, Terminal} ->
            flush_exit(Port),
            Terminal
    after Timeout ->
        case erlang:port_info(Port, id) of
            undefined ->
                {error, closed};
            _ ->
                catch port_close(Port),
                {error, timeout}
        end
    end.

%% @doc The child's OS pid (also its process group id), while the port is
%% open; `{error, closed}' after. {@link spawn/3} returns it for keeps.
-spec os_pid(port()) -> {ok, pos_integer()} | {error, closed | {bad_port, term()}}.
os_pid(Port) ->
    case control(Port, ?OP_OSPID, <<>>) of
        {ok, <<0:64/native>>} -> {error, closed};
        {ok, <<Pid:64/native>>} -> {ok, Pid};
        Error -> Error
    end.

%% @doc Byte and call counters of a running port, and under `cgroup' the
%% statistics of the child's cgroups keyed by v2 interface file name
%% (`#{}' without any; see {@link corral_cgroup:stats/1}).
-spec stats(port()) -> {ok, stats()} | {error, closed | {bad_port, term()}}.
stats(Port) ->
    case control(Port, ?OP_STATS, <<>>) of
        %% The driver sends the map itself (term_to_binary format).
        {ok, Bin} ->
            Cgroup =
                case cgroup_dirs(Port) of
                    {ok, Dirs} -> corral_cgroup:stats(Dirs);
                    _ -> #{}
                end,
            {ok, maps:put(cgroup, Cgroup, binary_to_term(Bin))};
        Error ->
            Error
    end.

%% @doc The directories of the child's cgroup leaves: `v2' (or `undefined')
%% and the `v1' ones. Both empty before the child started.
-spec cgroup_dirs(port()) -> {ok, corral_cgroup:dirs()} | {error, closed}.
cgroup_dirs(Port) ->
    case control(Port, ?OP_CGROUPS, <<>>) of
        {ok, Bin} ->
            [V2 | V1] = binary:split(Bin, <<0>>, [global]),
            {ok, #{
                v2 =>
                    case V2 of
                        <<>> -> undefined;
                        _ -> V2
                    end,
                v1 => V1
            }};
        Error ->
            Error
    end.

%% @doc Reads one interface file (`"memory.peak"'; no '/', no "..") of the
%% child's cgroups; a v2 name whose controller is on v1 is translated (see
%% {@link corral_cgroup:get/2}).
-spec cgget(port(), iodata()) -> {ok, binary()} | {error, term()}.
cgget(Port, File) ->
    case cgroup_dirs(Port) of
        {ok, Dirs} -> corral_cgroup:get(Dirs, File);
        Error -> Error
    end.

%% @doc Writes one interface file of the child's cgroups (a v2 name whose
%% controller is on v1 is converted: {@link corral_cgroup:set/3}).
-spec cgset(port(), iodata(), iodata() | integer()) -> ok | {error, term()}.
cgset(Port, File, Value) ->
    case cgroup_dirs(Port) of
        {ok, Dirs} -> corral_cgroup:set(Dirs, File, Value);
        Error -> Error
    end.

%% @doc What cgroups give this VM's children. `v2': our cgroup v2 group
%% (`none' without a v2 hierarchy). `base': `ok' when a spawner here can make
%% its base `corral.<pid>' in that group and move children into leaves below
%% it, else `{error, Why}' (then children are contained by process group
%% only, and `Why' names the group to delegate). `spawner_base': the running
%% spawner's base, or `none' (no spawner yet, or it has none). `v1': the v1
%% hierarchies with a controller. `controllers': where a child's cgroup
%% option would put each controller. A fresh `corral_spawner
%% --cgroup-info' finds all but `spawner_base' with the code a spawner runs
%% at start, probe included.
-spec cgroup_info() -> cgroup_info().
cgroup_info() ->
    Spawner = ensure_driver(),
    Port = open_port(
        {spawn_executable, Spawner},
        [{args, ["--cgroup-info"]}, binary, exit_status, use_stdio, hide]
    ),
    Result = collect_info(Port, []),
    flush_exit(Port),
    case Result of
        {0, Text} ->
            {ok, Tokens, _} = erl_scan:string(binary_to_list(Text)),
            {ok, Info} = erl_parse:parse_term(Tokens),
            Info#{spawner_base => spawner_base(maps:get(v2, Info))};
        {Status, Text} ->
            erlang:error({corral_cgroup_info, Status, Text})
    end.

collect_info(Port, Acc) ->
    receive
        {Port, {data, Bin}} -> collect_info(Port, [Acc | Bin]);
        {Port, {exit_status, Status}} -> {Status, iolist_to_binary(Acc)}
    end.

%% The spawner is the VM's child (posix_spawn): its base is the corral.<pid>
%% in our v2 group whose pid's parent is this VM.
spawner_base(none) ->
    none;
spawner_base(#{group := Group}) ->
    Vm = os:getpid(),
    Ours = fun(Name) ->
        case Name of
            "corral." ++ Pid when Pid =/= "" ->
                lists:all(fun(C) -> C >= $0 andalso C =< $9 end, Pid) andalso
                    parent_of(Pid) =:= Vm;
            _ ->
                false
        end
    end,
    case file:list_dir(Group) of
        {ok, Names} ->
            case lists:filter(Ours, Names) of
                [Name | _] -> filename:join(Group, Name);
                [] -> none
            end;
        {error, _} ->
            none
    end.

%% The parent pid in /proc/<Pid>/stat: the field after the state, which
%% follows the last ')' (the command name may hold anything).
parent_of(Pid) ->
    case file:read_file("/proc/" ++ Pid ++ "/stat") of
        {ok, Stat} ->
            [_, Rest] = string:split(Stat, <<")">>, trailing),
            case string:lexemes(Rest, " ") of
                [_State, Parent | _] -> binary_to_list(Parent);
                _ -> undefined
            end;
        {error, _} ->
            undefined
    end.

%%% ------------------------------------------------------------------------
%%% cmd

%% @equiv cmd(Cmd, Args, [])
-spec cmd(iodata() | atom(), [iodata() | atom()]) ->
    {term(), non_neg_integer() | timeout | max_output_exceeded} | {error, term()}.
cmd(Cmd, Args) -> cmd(Cmd, Args, []).

%% @doc Runs a command to completion and returns `{Output, Status}'.
%%
%% `Status' is the exit status, 128 + N for death by signal N, `timeout'
%% when `timeout' ms passed (the whole tree is dead by then), or
%% `max_output_exceeded' when the output reached `max_output_size' bytes
%% (`Output' holds exactly that many). `Output' is a binary, or the
%% accumulator of `{fold, {Fun, Acc0}}' where `Fun(Chunk, Acc)' is called for
%% every chunk in order. stdin gets `input' (iodata, or a fun of the port that
%% writes with {@link write/2}) and is then closed. stderr is the VM's own
%% (as System.cmd/3 leaves it) unless `stderr' says otherwise: `pipe' or
%% `consume' forwards it to standard_error, `redirect', `discard'; or
%% `stderr_to_stdout', `capture_stderr_only'. Options: see
%% {@link corral_opts:option()}.
-spec cmd(iodata() | atom(), [iodata() | atom()], corral_opts:options()) ->
    {term(), non_neg_integer() | timeout | max_output_exceeded} | {error, term()}.
cmd(Cmd, Args, Opts) ->
    case corral_opts:normalize(Cmd, Args, Opts, cmd) of
        {ok, N} -> run_cmd(N);
        Error -> Error
    end.

%% @doc The status of a terminal message: the exit status, 128 + N for
%% death by signal N (an OOM kill too: 137, as a shell says; the terminal
%% message itself tells it apart), or `{error, Reason}' when the child was
%% lost. The one
%% mapping of cmd/3, corral_stream and Corral.Process.
-spec status(terminal()) -> status().
status({exit_status, N}) -> N;
status({exit_signal, Sig}) -> 128 + Sig;
status({exit_signal, Sig, oom_kill}) -> 128 + Sig;
status({error, Reason}) -> {error, Reason}.

-record(cmd, {
    port :: port(),
    fold :: fun((binary(), term()) -> term()),
    acc :: term(),
    capture :: stdout | stderr,
    forward_stderr :: boolean(),
    size = 0 :: non_neg_integer(),
    max :: pos_integer() | infinity,
    feeder :: corral_feed:feeder(),
    timer :: undefined | reference(),
    outcome = running :: running | timeout | max_output_exceeded
}).

run_cmd(N) ->
    case open_normalized(N) of
        {ok, Port} ->
            {Fold, Acc0} =
                case maps:get(fold, N) of
                    undefined -> {fun(Bin, Acc) -> [Bin | Acc] end, []};
                    F -> F
                end,
            Feeder = corral_feed:start(Port, maps:get(input, N), false),
            Timer =
                case maps:get(timeout, N) of
                    infinity -> undefined;
                    T -> erlang:start_timer(T, self(), {corral_timeout, Port})
                end,
            S = #cmd{
                port = Port,
                fold = Fold,
                acc = Acc0,
                capture = maps:get(output, N),
                forward_stderr = maps:get(stderr, N) =:= forward,
                max = maps:get(max_output_size, N),
                feeder = Feeder,
                timer = Timer
            },
            Result = cmd_loop(S),
            case maps:get(fold, N) of
                undefined ->
                    case Result of
                        {error, _} = Error -> Error;
                        {Chunks, Status} -> {iolist_to_binary(lists:reverse(Chunks)), Status}
                    end;
                _ ->
                    Result
            end;
        Error ->
            Error
    end.

cmd_loop(#cmd{port = Port, feeder = Feeder} = S) ->
    {FRef, FMon} = corral_feed:refs(Feeder),
    receive
        {Port, {data, Stream, Bin}} ->
            _ = ack(Port, byte_size(Bin)),
            cmd_loop(take(Stream, Bin, S));
        {Port, {stdin_error, Errno}} ->
            corral_feed:stdin_error(Feeder, Errno),
            cmd_loop(S);
        {timeout, Ref, {corral_timeout, Port}} when Ref =:= S#cmd.timer ->
            _ = request_stop(Port),
            cmd_loop(S#cmd{timer = undefined, outcome = finished(S#cmd.outcome, timeout)});
        {FRef, input_failed, Class, Why, Stack} ->
            catch port_close(Port),
            flush_exit(Port),
            cancel_timer(S#cmd.timer),
            corral_feed:stop(Feeder),
            erlang:raise(Class, Why, Stack);
        {'DOWN', FMon, process, _, _} ->
            cmd_loop(S#cmd{feeder = corral_feed:down(Feeder)});
        {Port, Terminal} ->
            flush_exit(Port),
            cancel_timer(S#cmd.timer),
            corral_feed:stop(Feeder),
            case {S#cmd.outcome, status(Terminal)} of
                {_, {error, Reason}} -> {error, Reason};
                {running, Status} -> {S#cmd.acc, Status};
                {Outcome, _} -> {S#cmd.acc, Outcome}
            end
    end.

finished(running, Outcome) -> Outcome;
finished(Earlier, _) -> Earlier.

take(stderr, Bin, #cmd{capture = stdout, forward_stderr = true} = S) ->
    io:put_chars(standard_error, Bin),
    S;
take(Stream, _Bin, #cmd{capture = Capture} = S) when Stream =/= Capture ->
    S;
take(_, _Bin, #cmd{outcome = Outcome} = S) when Outcome =/= running ->
    S;
take(_, Bin, #cmd{size = Size, max = Max} = S) when Max =/= infinity, Size + byte_size(Bin) >= Max ->
    Acc =
        case Max - Size of
            0 -> S#cmd.acc;
            Keep -> (S#cmd.fold)(binary:part(Bin, 0, Keep), S#cmd.acc)
        end,
    Outcome =
        case Size + byte_size(Bin) > Max of
            true ->
                _ = request_stop(S#cmd.port),
                max_output_exceeded;
            false ->
                running
        end,
    S#cmd{acc = Acc, size = Max, outcome = Outcome};
take(_, Bin, #cmd{size = Size} = S) ->
    S#cmd{acc = (S#cmd.fold)(Bin, S#cmd.acc), size = Size + byte_size(Bin)}.

cancel_timer(undefined) ->
    ok;
cancel_timer(Ref) ->
    _ = erlang:cancel_timer(Ref),
    receive
        {timeout, Ref, _} -> ok
    after 0 -> ok
    end.

%%% ------------------------------------------------------------------------
%%% Helpers

%% Loads the driver once per VM and returns the spawner's path.
ensure_driver() ->
    case persistent_term:get({?MODULE, spawner}, undefined) of
        undefined ->
            Priv = priv_dir(),
            case erl_ddll:load_driver(Priv, "corral_drv") of
                ok -> ok;
                {error, already_loaded} -> ok;
                %% Another process loaded it first, and the driver locks
                %% itself in memory (D4): loaded all the same.
                {error, permanent} -> ok;
                {error, E} -> erlang:error({corral_driver, erl_ddll:format_error(E), Priv})
            end,
            Path = unicode:characters_to_binary(filename:join(Priv, "corral_spawner")),
            persistent_term:put({?MODULE, spawner}, Path),
            Path;
        Path ->
            Path
    end.

priv_dir() ->
    case code:priv_dir(corral) of
        {error, _} -> filename:join(filename:dirname(filename:dirname(code:which(?MODULE))), "priv");
        Dir -> Dir
    end.

%% Anything but a port is refused by its type. A port of another driver
%% is refused by name, except for ACK, which is called once per chunk of
%% output and would pay a port_info/2 round trip (a few microseconds) each
%% time: an ACK that reaches another driver fails there or does nothing
%% that driver knows of, as its opcode is its own.
control(Port, _Op, _Data) when not is_port(Port) ->
    {error, {bad_port, Port}};
control(Port, Op, Data) when Op =:= ?OP_ACK ->
    port_control_closed(Port, Op, Data);
control(Port, Op, Data) ->
    case erlang:port_info(Port, name) of
        {name, "corral_drv"} -> port_control_closed(Port, Op, Data);
        undefined -> {error, closed};
        _ -> {error, {bad_port, Port}}
    end.

port_control_closed(Port, Op, Data) ->
    try
        {ok, port_control(Port, Op, Data)}
    catch
        error:badarg -> {error, closed}
    end.

%% The owner of a Corral port, or the error control/3 would return.
port_owner(Port) when not is_port(Port) ->
    {error, {bad_port, Port}};
port_owner(Port) ->
    case erlang:port_info(Port, name) of
        {name, "corral_drv"} ->
            case erlang:port_info(Port, connected) of
                {connected, Owner} -> Owner;
                undefined -> {error, closed}
            end;
        undefined ->
            {error, closed};
        _ ->
            {error, {bad_port, Port}}
    end.

%% A closed port needs no more credit, window or stdin closing.
simple_control(Port, Op, Data) ->
    case control(Port, Op, Data) of
        {error, {bad_port, _}} = Error -> Error;
        _ -> ok
    end.

%% @private The port closes itself after its terminal message; a caller that
%% traps exits would otherwise find {'EXIT', Port, normal} in its mailbox.
-spec flush_exit(port()) -> ok.
flush_exit(Port) ->
    unlink(Port),
    receive
        {'EXIT', Port, _} -> ok
    after 0 -> ok
    end.
