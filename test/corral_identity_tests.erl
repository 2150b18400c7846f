%% EUnit tests of the identity and limit options through the Erlang API:
%% their validation (corral_opts), and, as root, what the child is while it
%% runs (/proc/<pid>/status and /proc/<pid>/limits) and the errors that name
%% each step. Without root those are skipped, with the reason printed.
-module(corral_identity_tests).

-include_lib("eunit/include/eunit.hrl").

%%% Validation

request(Opts) ->
    {ok, #{request := R}} = corral_opts:normalize("true", [], Opts, open),
    R.

identity_keys() -> [uid, gid, groups, rlimits, nice, umask, no_new_privs].

absent_options_add_nothing_to_the_request_test() ->
    R = request([]),
    ?assertEqual([], [K || K <- identity_keys(), is_map_key(K, R)]),
    %% nil and the defaults are "not set" too.
    R2 = request([{uid, nil}, {gid, nil}, {groups, nil}, {rlimits, #{}}, {nice, nil},
                  {umask, nil}, {no_new_privs, false}]),
    ?assertEqual([], [K || K <- identity_keys(), is_map_key(K, R2)]).

values_reach_the_request_test() ->
    R = request([
        {uid, "nobody"},
        {gid, 65534},
        {groups, [<<"adm">>, 4, nogroup]},
        {rlimits, #{nofile => {64, 128}, core => 0, as => infinity, cpu => {10, infinity}}},
        {nice, -20},
        {umask, 8#027},
        {no_new_privs, true}
    ]),
    ?assertMatch(
        #{
            uid := <<"nobody">>,
            gid := 65534,
            groups := [<<"adm">>, 4, <<"nogroup">>],
            nice := -20,
            umask := 8#027,
            no_new_privs := true
        },
        R
    ),
    ?assertEqual(
        [{as, infinity, infinity}, {core, 0, 0}, {cpu, 10, infinity}, {nofile, 64, 128}],
        maps:get(rlimits, R)
    ),
    %% An empty list of groups is set (setgroups([])); a list of small gids
    %% is a list of numbers (term_to_binary sends it as a string).
    ?assertMatch(#{groups := []}, request([{groups, []}])),
    ?assertMatch(#{groups := [0, 4]}, request([{groups, [0, 4]}])),
    %% A list keeps its order.
    ?assertEqual(
        [{nproc, 5, 5}, {fsize, 0, 1}],
        maps:get(rlimits, request([{rlimits, [{nproc, 5}, {fsize, {0, 1}}]}]))
    ).

every_context_takes_them_test_() ->
    [
        ?_assertMatch({ok, #{request := #{uid := 0}}}, corral_opts:normalize("true", [], [{uid, 0}], C))
     || C <- [open, cmd, stream, process, daemon]
    ].

bad_values_name_the_option_and_value_test_() ->
    Bad = [
        {uid, -1, -1},
        {uid, 4294967295, 4294967295},
        {uid, <<>>, <<>>},
        {uid, <<"a", 0, "b">>, <<"a", 0, "b">>},
        {uid, 1.0, 1.0},
        {uid, true, true},
        {gid, {0}, {0}},
        {groups, adm, adm},
        {groups, [4, -4], -4},
        {groups, [<<>>], <<>>},
        {rlimits, 5, 5},
        {rlimits, [nofile], nofile},
        {rlimits, [{vmem, 1}], {vmem, 1}},
        {rlimits, [{nofile, -1}], {nofile, -1}},
        {rlimits, [{nofile, {2, 1}}], {nofile, {2, 1}}},
        {rlimits, [{nofile, {infinity, 1}}], {nofile, {infinity, 1}}},
        {rlimits, [{nofile, unlimited}], {nofile, unlimited}},
        {rlimits, [{nofile, 1 bsl 63}], {nofile, 1 bsl 63}},
        {rlimits, [{core, 0}, {core, 1}], {core, 1}},
        {nice, 20, 20},
        {nice, -21, -21},
        {umask, 8#1000, 8#1000},
        {umask, "022", "022"},
        {no_new_privs, 1, 1}
    ],
    [
        ?_assertEqual(
            {error, {bad_option, Name, Shown}},
            corral_opts:normalize("true", [], [{Name, Value}], open)
        )
     || {Name, Value, Shown} <- Bad
    ].

%%% The child (root)

root() -> os:cmd("id -u") =:= "0\n".

as_root(Tests) ->
    case root() of
        true ->
            Tests;
        false ->
            io:format(user, "corral_identity_tests: skipping the child tests: not running as root~n", []),
            []
    end.

child_test_() ->
    as_root([
        {"runs as nobody with the given groups", fun runs_as_nobody/0},
        {"a uid alone brings the user's groups", fun uid_brings_groups/0},
        {"rlimits, nice, umask and no_new_privs", fun limits_nice_umask_nnp/0},
        {"failures name the step", fun failures_name_the_step/0},
        {"unprivileged failures name the step", fun unprivileged_failures/0}
    ]).

%% A running cat, as the options make it; Fun(OsPid) reads /proc, then cat ends.
with_cat(Opts, Fun) ->
    {ok, Port, Pid} = corral:spawn("cat", [], Opts),
    try
        Fun(Pid)
    after
        ok = corral:close_stdin(Port),
        ?assertEqual({exit_status, 0}, terminal(Port))
    end.

runs_as_nobody() ->
    with_cat([{uid, "nobody"}, {groups, ["adm", 4000001]}], fun(Pid) ->
        ?assertEqual("65534 65534 65534 65534", status(Pid, "Uid")),
        ?assertEqual("65534 65534 65534 65534", status(Pid, "Gid")),
        ?assertEqual("4 4000001", status(Pid, "Groups"))
    end).

uid_brings_groups() ->
    %% nobody's groups, never the VM's (root's).
    Expected = string:trim(os:cmd("id -G nobody")),
    with_cat([{uid, 65534}], fun(Pid) ->
        ?assertEqual(Expected, status(Pid, "Groups")),
        ?assertEqual("65534 65534 65534 65534", status(Pid, "Gid"))
    end).

limits_nice_umask_nnp() ->
    Opts = [
        {uid, nobody},
        {rlimits, [{nofile, {64, 128}}, {core, 0}]},
        {nice, 4},
        {umask, 8#077},
        {no_new_privs, true}
    ],
    with_cat(Opts, fun(Pid) ->
        ?assertEqual(["64", "128"], limit(Pid, "Max open files")),
        ?assertEqual(["0", "0"], limit(Pid, "Max core file size")),
        ?assertEqual("0077", status(Pid, "Umask")),
        ?assertEqual("1", status(Pid, "NoNewPrivs")),
        ?assertEqual("4", nice(Pid))
    end).

failures_name_the_step() ->
    ?assertEqual({error, {enoent, uid}}, corral:open("true", [], [{uid, "corral-no-such-user"}])),
    ?assertEqual({error, {enoent, gid}}, corral:open("true", [], [{gid, "corral-no-such-group"}])),
    ?assertEqual(
        {error, {enoent, groups}}, corral:open("true", [], [{groups, [0, "corral-no-such-group"]}])
    ),
    ?assertEqual({error, {enoent, gid}}, corral:open("true", [], [{uid, 4000123}])),
    {ok, NrOpen} = file:read_file("/proc/sys/fs/nr_open"),
    Above = binary_to_integer(string:trim(NrOpen)) + 1,
    ?assertEqual(
        {error, {eperm, rlimit}}, corral:open("true", [], [{rlimits, #{nofile => {1, Above}}}])
    ),
    Dir = private_dir(),
    try
        ?assertEqual({error, {eacces, chdir}}, corral:open("true", [], [{uid, 65534}, {cd, Dir}]))
    after
        file:del_dir(Dir)
    end.

%% A VM's child cannot gain what its spawner lacks: run an escript as nobody
%% (a VM of its own, whose spawner is nobody's) and collect its results.
unprivileged_failures() ->
    Ebin = filename:dirname(code:which(corral)),
    Script =
        "main(_) ->\n"
        "    R = [corral:open(\"true\", [], O) || O <- [\n"
        "        [{groups, [0]}], [{gid, 0}], [{uid, 0}, {gid, 65534}, {groups, []}],\n"
        "        [{nice, -1}], [{rlimits, #{core => infinity}}]]],\n"
        "    io:format(\"result: ~w.~n\", [[element(2, X) || X <- R]]).\n",
    File = "/tmp/corral_identity_unprivileged.escript",
    ok = file:write_file(File, ["#!/usr/bin/env escript\n%%! -pa ", Ebin, "\n", Script]),
    try
        Out = os:cmd(
            "ulimit -c 0; setpriv --reuid=65534 --regid=65534 --clear-groups escript " ++ File
        ),
        %% Only the result line: the spawner may log that it has no cgroups.
        [Line] = [L || "result: " ++ L <- string:split(Out, "\n", all)],
        {ok, Tokens, _} = erl_scan:string(Line),
        {ok, Results} = erl_parse:parse_term(Tokens),
        ?assertEqual(
            [{eperm, setgroups}, {eperm, setgid}, {eperm, setuid}, {eacces, nice}, {eperm, rlimit}],
            Results
        )
    after
        file:delete(File)
    end.

%%% Helpers

private_dir() ->
    Dir = "/tmp/corral_identity_private." ++ os:getpid(),
    ok = file:make_dir(Dir),
    ok = file:change_mode(Dir, 8#700),
    Dir.

proc(Pid, File) ->
    {ok, B} = file:read_file(["/proc/", integer_to_list(Pid), "/", File]),
    string:split(binary_to_list(B), "\n", all).

status(Pid, Key) ->
    Prefix = Key ++ ":",
    [V] = [
        string:join(string:lexemes(string:prefix(L, Prefix), "\t "), " ")
     || L <- proc(Pid, "status"), string:prefix(L, Prefix) =/= nomatch
    ],
    V.

limit(Pid, Row) ->
    [Fields] = [
        lists:sublist(string:lexemes(string:prefix(L, Row), " "), 2)
     || L <- proc(Pid, "limits"), string:prefix(L, Row) =/= nomatch
    ],
    Fields.

%% Field 19 of /proc/<pid>/stat, counted after the ")" that ends the name.
nice(Pid) ->
    [Stat | _] = proc(Pid, "stat"),
    After = string:slice(Stat, string:rchr(Stat, $)) + 1),
    lists:nth(19 - 2, string:lexemes(After, " ")).

terminal(Port) ->
    receive
        {Port, {exit_status, _} = T} -> T;
        {Port, {exit_signal, _} = T} -> T;
        {Port, {error, _} = T} -> T
    after 10000 -> error(no_terminal)
    end.
