%% @doc Lazy, demand-driven streams over a child's output.
%%
%% A stream owns one port (see {@link corral:open/3}). Output is acknowledged
%% to the driver only when the consumer asks for the next element, so at most
%% one credit window (`window', 1 MiB by default) of output is in memory,
%% however much the child writes: the rest waits in the child's pipe.
%%
%% Pull one element at a time with {@link open/3}, {@link next/1} and
%% {@link close/1}, or fold over the whole run with {@link fold/5}. Elements:
%%
%% <ul>
%% <li>`Bin': a chunk of stdout (or of stdout and stderr merged, with
%%     `{stderr, redirect}'), as the child wrote it;</li>
%% <li>`{stdout, Bin}' and `{stderr, Bin}' instead, with `{stderr, consume}';</li>
%% <li>`{error, Errno}' (e.g. `{error, epipe}'): the child closed its stdin
%%     while input was still pending. The rest of the input is dropped, the
%%     output goes on. `{ignore_epipe, true}' leaves `epipe' out;</li>
%% <li>last, exactly once: `{exit, Status}', where `Status' is the exit status,
%%     128 + N for death by signal N (as in a shell and in `corral:cmd/3'), or
%%     `{error, Reason}' when the child was lost (e.g. the spawner died).</li>
%% </ul>
%%
%% Options: everything {@link corral:open/3} takes, plus
%% <ul>
%% <li>`input': a binary, iodata, or a fun of one argument, `Sink', run in a
%%     helper process. The fun writes with `Sink(IoData)', which returns `ok',
%%     `{error, epipe}' once the child closed its stdin (`ok' with
%%     `ignore_epipe'), or `{error, closed}' once the child is gone. Writes
%%     suspend the helper while the driver's stdin queue is full. stdin is
%%     closed when the fun returns. Without `input', stdin is closed at once;</li>
%% <li>`stderr': absent or `pipe': stderr is copied to the VM's standard_error,
%%     like `corral:cmd/3'; `consume': tagged elements; `redirect' (or
%%     `stdout', or `{stderr_to_stdout, true}'): merged into stdout;
%%     `discard' (or `null'): dropped by the OS;</li>
%% <li>`ignore_epipe': boolean, default `false'.</li>
%% </ul>
%%
%% What can go wrong: a consumer that stops asking for elements without
%% calling {@link close/1} leaves the child blocked on a full pipe until the
%% consumer exits (its port is linked to it, so the child is stopped then).
%% {@link close/1} waits until the child's whole process group is gone, which
%% takes up to `kill_timeout' ms for a child that ignores its stop signal.
%% Input that raises in the helper is re-raised in the consumer.
-module(corral_stream).

-export([prepare/3, open/1, open/3, next/1, close/1, fold/5, os_pid/1]).

-export_type([spec/0, stream/0, element/0, status/0]).

-record(spec, {
    normalized :: corral_opts:normalized(),
    input :: undefined | iodata() | fun((sink()) -> term()),
    stderr :: forward | tagged | merged | discard,
    ignore_epipe :: boolean()
}).

-record(stream, {
    port :: port(),
    ref :: reference(),
    writer :: undefined | {pid(), reference()},
    stderr :: forward | tagged | merged | discard,
    ignore_epipe :: boolean(),
    %% Bytes of the element last handed out, acknowledged on the next pull.
    pending = 0 :: non_neg_integer(),
    done = false :: boolean()
}).

-opaque spec() :: #spec{}.
-opaque stream() :: #stream{}.
-type sink() :: fun((iodata()) -> ok | {error, atom()}).
-type status() :: non_neg_integer() | {error, term()}.
-type element() ::
    binary()
    | {stdout | stderr, binary()}
    | {error, atom()}
    | {exit, status()}.

%% Inputs up to this size are queued by the consumer itself; the driver takes
%% them without suspending it. Larger ones go through a helper process.
-define(DIRECT_INPUT_MAX, 524288).

%%% ------------------------------------------------------------------------
%%% API

%% @doc Validates a command and its options without starting anything.
%% The result can be opened any number of times with {@link open/1}.
-spec prepare(iodata() | atom(), [iodata()], [corral_opts:option()] | map()) ->
    {ok, spec()} | {error, term()}.
prepare(Cmd, Args, Opts0) when is_map(Opts0) ->
    prepare(Cmd, Args, maps:to_list(Opts0));
prepare(Cmd, Args, Opts0) when is_list(Opts0) ->
    {Input, Opts1} = take(input, Opts0, undefined),
    {IgnoreEpipe, Opts} = take(ignore_epipe, Opts1, false),
    Stderr = stderr_mode(Opts),
    if
        not is_boolean(IgnoreEpipe) ->
            {error, {bad_option, ignore_epipe, IgnoreEpipe}};
        true ->
            case input(Input) of
                {ok, In} ->
                    case corral_opts:normalize(Cmd, Args, Opts, corral_opts:spawn_keys()) of
                        {ok, N} ->
                            {ok, #spec{
                                normalized = N,
                                input = In,
                                stderr = Stderr,
                                ignore_epipe = IgnoreEpipe
                            }};
                        Error ->
                            Error
                    end;
                error ->
                    {error, {bad_option, input, Input}}
            end
    end;
prepare(_Cmd, _Args, Opts) ->
    {error, {bad_option, options, Opts}}.

%% @doc Starts `Cmd' for streaming; the caller owns the stream.
-spec open(iodata() | atom(), [iodata()], [corral_opts:option()] | map()) ->
    {ok, stream()} | {error, term()}.
open(Cmd, Args, Opts) ->
    case prepare(Cmd, Args, Opts) of
        {ok, Spec} -> open(Spec);
        Error -> Error
    end.

%% @doc Starts a prepared command; the caller owns the stream.
-spec open(spec()) -> {ok, stream()} | {error, term()}.
open(#spec{normalized = N, input = Input, stderr = Stderr, ignore_epipe = Ignore}) ->
    case corral:open_normalized(N) of
        {ok, Port} ->
            Ref = make_ref(),
            Writer = feed(Port, Ref, Input, Ignore),
            {ok, #stream{
                port = Port,
                ref = Ref,
                writer = Writer,
                stderr = Stderr,
                ignore_epipe = Ignore
            }};
        Error ->
            Error
    end.

%% @doc Returns the next element, waiting for the child as long as it takes,
%% or `eof' after the `{exit, Status}' element. Acknowledges the previous
%% element's bytes first: that is what lets the child write more.
-spec next(stream()) -> {element(), stream()} | eof.
next(#stream{done = true}) ->
    eof;
next(#stream{port = Port, ref = Ref, pending = Pending} = S0) ->
    _ = Pending > 0 andalso corral:ack(Port, Pending),
    S = S0#stream{pending = 0},
    receive
        {Port, {data, stdout, Bin}} ->
            {stdout(Bin, S), S#stream{pending = byte_size(Bin)}};
        {Port, {data, stderr, Bin}} ->
            case S#stream.stderr of
                tagged ->
                    {{stderr, Bin}, S#stream{pending = byte_size(Bin)}};
                _ ->
                    io:put_chars(standard_error, Bin),
                    next(S#stream{pending = byte_size(Bin)})
            end;
        {Port, {stdin_error, Errno}} ->
            tell_writer(S, Errno),
            case Errno =:= epipe andalso S#stream.ignore_epipe of
                true -> next(S);
                false -> {{error, Errno}, S}
            end;
        {Port, {started, _}} ->
            next(S);
        {Ref, input_failed, Class, Reason, Stack} ->
            close(S),
            erlang:raise(Class, Reason, Stack);
        {'DOWN', MRef, process, _, _} when element(2, S#stream.writer) =:= MRef ->
            next(S#stream{writer = undefined});
        {Port, Terminal} ->
            corral:flush_exit(Port),
            finish_writer(S),
            {{exit, status(Terminal)}, S#stream{writer = undefined, done = true}}
    end.

%% @doc Stops the child, if it still runs, and waits until its whole process
%% group is gone (the stop signal, then SIGKILL after `kill_timeout'). Output
%% in flight is dropped. Idempotent.
-spec close(stream()) -> ok.
close(#stream{done = true}) ->
    ok;
close(#stream{port = Port, pending = Pending} = S) ->
    stop_writer(S),
    %% The driver must get its credit back to read the pipe to EOF.
    _ = Pending > 0 andalso corral:ack(Port, Pending),
    _ =
        case erlang:port_info(Port, id) of
            undefined -> ok;
            _ -> corral:stop(Port, infinity)
        end,
    flush_port(Port),
    flush_input(S#stream.ref),
    ok.

%% @doc Runs `Cmd' and folds `Fun' over its elements, except the final
%% `{exit, Status}'. `Fun(Element, Acc)' returns `{cont, Acc1}' or
%% `{halt, Acc1}'; halting stops the child at once.
%%
%% Returns `{Acc, Status}' with `Status' as in `{exit, Status}', or `halted'
%% when `Fun' halted; `{error, Reason}' when the child could not be started
%% or was lost.
-spec fold(
    iodata() | atom(),
    [iodata()],
    [corral_opts:option()] | map(),
    fun((element(), Acc) -> {cont, Acc} | {halt, Acc}),
    Acc
) -> {Acc, non_neg_integer() | halted} | {error, term()}.
fold(Cmd, Args, Opts, Fun, Acc0) ->
    case open(Cmd, Args, Opts) of
        {ok, S} ->
            try
                fold_loop(S, Fun, Acc0)
            after
                close(S)
            end;
        Error ->
            Error
    end.

%% @doc The child's OS pid (also its process group id), while it runs.
-spec os_pid(stream()) -> {ok, pos_integer()} | {error, closed}.
os_pid(#stream{port = Port}) -> corral:os_pid(Port).

%%% ------------------------------------------------------------------------
%%% Internals

fold_loop(S0, Fun, Acc) ->
    case next(S0) of
        {{exit, {error, Reason}}, _} ->
            {error, Reason};
        {{exit, Status}, _} ->
            {Acc, Status};
        {Element, S} ->
            case Fun(Element, Acc) of
                {cont, Acc1} ->
                    fold_loop(S, Fun, Acc1);
                {halt, Acc1} ->
                    close(S),
                    {Acc1, halted};
                Other ->
                    close(S),
                    erlang:error({bad_return, Other})
            end
    end.

stdout(Bin, #stream{stderr = tagged}) -> {stdout, Bin};
stdout(Bin, _) -> Bin.

status({exit_status, N}) -> N;
status({exit_signal, Sig}) -> 128 + Sig;
status({error, Reason}) -> {error, Reason};
status(Other) -> {error, Other}.

take(Key, Opts, Default) ->
    {proplists:get_value(Key, Opts, Default), proplists:delete(Key, Opts)}.

stderr_mode(Opts) ->
    case proplists:get_value(stderr_to_stdout, Opts, false) of
        true ->
            merged;
        _ ->
            case proplists:get_value(stderr, Opts, pipe) of
                consume -> tagged;
                M when M =:= redirect; M =:= stdout -> merged;
                M when M =:= discard; M =:= null -> discard;
                %% pipe, and bad values that corral_opts reports
                _ -> forward
            end
    end.

input(undefined) -> {ok, undefined};
input(nil) -> {ok, undefined};
input(F) when is_function(F, 1) -> {ok, F};
input(B) when is_binary(B) -> {ok, B};
input(L) when is_list(L) ->
    try iolist_size(L) of
        _ -> {ok, L}
    catch
        error:badarg -> error
    end;
input(_) ->
    error.

%% Starts feeding stdin; returns the helper process, if one was needed.
feed(Port, _Ref, undefined, _Ignore) ->
    _ = corral:close_stdin(Port),
    undefined;
feed(Port, Ref, Data, Ignore) when not is_function(Data) ->
    case iolist_size(Data) =< ?DIRECT_INPUT_MAX of
        true ->
            _ = corral:write(Port, Data),
            _ = corral:close_stdin(Port),
            undefined;
        false ->
            feed(Port, Ref, fun(Sink) -> Sink(Data) end, Ignore)
    end;
feed(Port, Ref, Fun, Ignore) ->
    Owner = self(),
    %% Linked, so that the helper dies with the consumer; it never exits
    %% abnormally itself (failures travel as a message), so the link cannot
    %% take the consumer down.
    spawn_opt(fun() -> writer(Owner, Port, Ref, Fun, Ignore) end, [link, monitor]).

writer(Owner, Port, Ref, Fun, Ignore) ->
    Sink = fun(Data) -> sink(Port, Ref, Ignore, Data) end,
    try Fun(Sink) of
        _ -> corral:close_stdin(Port)
    catch
        Class:Reason:Stack -> Owner ! {Ref, input_failed, Class, Reason, Stack}
    end.

sink(Port, Ref, Ignore, Data) ->
    case stdin_error(Ref) of
        undefined -> corral:write(Port, Data);
        epipe when Ignore -> ok;
        Errno -> {error, Errno}
    end.

%% The consumer forwards the driver's stdin_error to the helper, which keeps
%% it, so that every later write returns it.
stdin_error(Ref) ->
    case get({corral_stdin_error, Ref}) of
        undefined ->
            receive
                {Ref, stdin_error, Errno} ->
                    put({corral_stdin_error, Ref}, Errno),
                    Errno
            after 0 -> undefined
            end;
        Errno ->
            Errno
    end.

tell_writer(#stream{writer = {Pid, _}, ref = Ref}, Errno) -> Pid ! {Ref, stdin_error, Errno};
tell_writer(_, _) -> ok.

%% The child has exited while the helper may still be writing: let it see
%% the error in its sink and end by itself, for a moment, then stop it.
finish_writer(#stream{writer = {Pid, MRef}, ref = Ref} = S) ->
    Pid ! {Ref, stdin_error, closed},
    receive
        {'DOWN', MRef, process, Pid, _} ->
            unlink(Pid),
            receive
                {Ref, input_failed, _, _, _} -> ok
            after 0 -> ok
            end
    after 100 ->
        stop_writer(S)
    end;
finish_writer(_) ->
    ok.

stop_writer(#stream{writer = {Pid, MRef}}) ->
    unlink(Pid),
    exit(Pid, kill),
    erlang:demonitor(MRef, [flush]),
    ok;
stop_writer(_) ->
    ok.

flush_port(Port) ->
    receive
        {Port, _} -> flush_port(Port)
    after 0 -> corral:flush_exit(Port)
    end.

flush_input(Ref) ->
    receive
        {Ref, input_failed, _, _, _} -> ok
    after 0 -> ok
    end.

