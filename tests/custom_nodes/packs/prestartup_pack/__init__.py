"""Reports what its prestartup script saw."""
import json
import os

from aiohttp import web
from server import PromptServer

SEEN = json.loads(os.environ.get("HEARTH_TEST_PRESTARTUP", "null"))


@PromptServer.instance.routes.get("/hearth_test/prestartup")
async def prestartup(request):
    return web.json_response(SEEN)


NODE_CLASS_MAPPINGS = {}
